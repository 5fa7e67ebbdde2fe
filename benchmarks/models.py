"""Inference cost of the uncertainty methods.

Prints, in one run:

- SNGP head time / backbone time for ResNet-18 at 224 px (goal <= 0.03); the head is the
  random features, the GP output layer, the variance (cached float64 covariance) and the
  mean field; the backbone is the spectrally normalized ResNet-18 ``forward_features``;
- ensemble K=5 time / (5 x single-network time), with the members batched (torch.func vmap)
  and looped, for ResNet-18 at 224 px and resnet_slim at 96 px;
- MC dropout (T=20, dropout before the head) time / deterministic time;
- the one-off covariance (Cholesky) time for 1024 random features.

Writes ``benchmarks/results/models.json``.  Timings are medians of repeated runs under
``torch.inference_mode()`` on the current device (CPU unless CUDA is available); set
``TILEUQ_BENCH_THREADS`` to pin the CPU thread count.

Run: ``.venv/bin/python benchmarks/models.py [--quick]``
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _timeit(fn: Callable[[], Any], reps: int, device: torch.device) -> float:
    fn()  # warm-up (also builds caches: SN sigma, covariance, stacked ensemble)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _tiles(n: int, px: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8, generator=g).to(device)


def sngp_head_ratio(device: torch.device, batch: int, reps: int) -> dict[str, Any]:
    import tileuq

    model = tileuq.build_model("sngp", "resnet18", num_classes=5, tile_px=224).to(device)
    model.train()
    with torch.no_grad():  # give the precision some data, then finalize as after training
        model.reset_precision()
        model(_tiles(8, 224, device))
    model.eval()
    model.finalize()
    net, head = model.core.net, model.sngp_heads()[0]
    tiles = _tiles(batch, 224, device)
    with torch.inference_mode():
        x = model.normalize(tiles)
        feats = net.forward_features(x)

        def run_head() -> None:
            raw, var = head.logits_and_variance(feats)
            head.mean_field_logits(raw, var)

        t_backbone = _timeit(lambda: net.forward_features(x), reps, device)
        t_head = _timeit(run_head, reps * 5, device)
    det = tileuq.build_model("deterministic", "resnet18", num_classes=5, tile_px=224).to(device)
    t_predict_sngp = _timeit(lambda: model.predict(tiles), reps, device)
    t_predict_det = _timeit(lambda: det.predict(tiles), reps, device)
    head.reset_precision()
    t_cov = _timeit(lambda: (setattr(head, "_cov_valid", False), head.finalize()), 3, device)
    return {
        "backbone": "resnet18",
        "tile_px": 224,
        "batch": batch,
        "backbone_s": t_backbone,
        "head_s": t_head,
        "head_over_backbone": t_head / t_backbone,
        "goal": 0.03,
        "predict_sngp_s": t_predict_sngp,
        "predict_deterministic_s": t_predict_det,
        "predict_sngp_over_deterministic": t_predict_sngp / t_predict_det,
        "covariance_1024_s": t_cov,
    }


def ensemble_ratio(
    device: torch.device, backbone: str, px: int, batch: int, reps: int, k: int = 5
) -> dict[str, Any]:
    import tileuq

    single = tileuq.build_model("deterministic", backbone, num_classes=5, tile_px=px).to(device)
    ens = tileuq.build_model("ensemble", backbone, num_classes=5, tile_px=px, num_members=k).to(
        device
    )
    tiles = _tiles(batch, px, device)
    t_single = _timeit(lambda: single.predict(tiles), reps, device)
    out: dict[str, Any] = {"backbone": backbone, "tile_px": px, "batch": batch, "members": k}
    out["single_s"] = t_single
    for mode in ("looped", "batched"):
        ens.core.ensemble.mode = mode
        t = _timeit(lambda: ens.predict(tiles), reps, device)
        out[f"{mode}_s"] = t
        out[f"{mode}_over_k_single"] = t / (k * t_single)
    out["faster"] = "batched" if out["batched_s"] < out["looped_s"] else "looped"
    mc = tileuq.build_model("mc_dropout", backbone, num_classes=5, tile_px=px).to(device)
    out["mc_dropout_T20_over_single"] = _timeit(lambda: mc.predict(tiles), reps, device) / t_single
    return out


def main() -> int:
    quick = "--quick" in sys.argv
    if os.environ.get("TILEUQ_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["TILEUQ_BENCH_THREADS"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    big_batch = 64 if device.type == "cuda" else 16
    reps = 2 if quick else 5
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"device={results['device']} threads={results['threads']} load={results['load_average']}")

    r = sngp_head_ratio(device, big_batch, reps)
    results["sngp_head"] = r
    print(
        f"SNGP head / backbone (ResNet-18, 224 px, batch {r['batch']}): "
        f"{r['head_s'] * 1e3:.2f} ms / {r['backbone_s'] * 1e3:.1f} ms = "
        f"{r['head_over_backbone']:.4f} (goal <= {r['goal']})"
    )
    print(
        f"  predict SNGP / deterministic: {r['predict_sngp_over_deterministic']:.3f}; "
        f"covariance (1024 features, Cholesky float64): {r['covariance_1024_s'] * 1e3:.1f} ms"
    )

    configs = [("resnet_slim", 96, 64)] + ([] if quick else [("resnet18", 224, big_batch)])
    results["ensemble"] = []
    for backbone, px, batch in configs:
        e = ensemble_ratio(device, backbone, px, batch, max(2, reps - 2))
        results["ensemble"].append(e)
        print(
            f"Ensemble K=5 ({backbone}, {px} px, batch {batch}): "
            f"single {e['single_s'] * 1e3:.0f} ms;"
            f" looped {e['looped_s'] * 1e3:.0f} ms = {e['looped_over_k_single']:.3f} x 5 single;"
            f" batched {e['batched_s'] * 1e3:.0f} ms = {e['batched_over_k_single']:.3f} x 5 single"
            f" -> {e['faster']} faster; MC dropout T=20 / single = "
            f"{e['mc_dropout_T20_over_single']:.3f}"
        )
    out = REPO / "benchmarks" / "results" / "models.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    from tileuq._io import write_json

    write_json(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
