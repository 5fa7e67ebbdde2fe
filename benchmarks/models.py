"""Inference cost of the uncertainty methods.

Prints, in one run:

- SNGP head time / backbone time for ResNet-18 at 224 px (goal <= 0.03); the head is the
  random features, the GP output layer, the variance (cached float64 covariance) and the
  mean field; the backbone is the spectrally normalized ResNet-18 ``forward_features``;
- ensemble K=5 time / (5 x single-network time), with the members batched (torch.func vmap)
  and looped, for ResNet-18 at 224 px and resnet_slim at 96 px;
- MC dropout (T=20, dropout before the head) time / deterministic time;
- the one-off covariance (Cholesky) time for 1024 random features.

Writes ``benchmarks/results/models.json``.  Candidates are timed in interleaved rounds (same
share of a shared machine's load); ratios use the minima (medians are in the JSON).  Runs
under ``torch.inference_mode()`` (``predict``) on the current device (CPU unless CUDA is
available); set ``TILEUQ_BENCH_THREADS`` to pin the CPU thread count.

Run: ``.venv/bin/python benchmarks/models.py [--quick]``
"""

from __future__ import annotations

import copy
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


def _race(fns: dict[str, Callable[[], Any]], reps: int, device: torch.device) -> dict[str, Any]:
    """Time several functions in interleaved rounds; return min and median per name.

    Interleaving gives every candidate the same share of a shared machine's load; the minimum
    (least disturbed run) is the figure compared, the median is kept for reference.
    """
    for fn in fns.values():
        fn()  # warm-up (builds caches: SN sigma, covariance, stacked ensemble)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {
        "min": {k: min(v) for k, v in times.items()},
        "median": {k: statistics.median(v) for k, v in times.items()},
    }


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

        inner = _race({"backbone": lambda: net.forward_features(x), "head": run_head}, reps, device)
    det = tileuq.build_model("deterministic", "resnet18", num_classes=5, tile_px=224).to(device)
    outer = _race(
        {"sngp": lambda: model.predict(tiles), "deterministic": lambda: det.predict(tiles)},
        reps,
        device,
    )
    head.reset_precision()
    t_cov = _race({"cov": lambda: (setattr(head, "_cov_valid", False), head.finalize())}, 3, device)
    t_backbone, t_head = inner["min"]["backbone"], inner["min"]["head"]
    return {
        "backbone": "resnet18",
        "tile_px": 224,
        "batch": batch,
        "backbone_s": t_backbone,
        "head_s": t_head,
        "head_over_backbone": t_head / t_backbone,
        "head_over_backbone_median": inner["median"]["head"] / inner["median"]["backbone"],
        "goal": 0.03,
        "predict_sngp_s": outer["min"]["sngp"],
        "predict_deterministic_s": outer["min"]["deterministic"],
        "predict_sngp_over_deterministic": outer["min"]["sngp"] / outer["min"]["deterministic"],
        "covariance_1024_s": t_cov["min"]["cov"],
    }


def ensemble_ratio(
    device: torch.device, backbone: str, px: int, batch: int, reps: int, k: int = 5
) -> dict[str, Any]:
    import tileuq

    single = tileuq.build_model("deterministic", backbone, num_classes=5, tile_px=px).to(device)
    ens = tileuq.build_model("ensemble", backbone, num_classes=5, tile_px=px, num_members=k).to(
        device
    )
    mc = tileuq.build_model("mc_dropout", backbone, num_classes=5, tile_px=px).to(device)
    ens_looped = ens
    ens_batched = copy.deepcopy(ens)
    ens_looped.core.ensemble.mode = "looped"
    ens_batched.core.ensemble.mode = "batched"
    tiles = _tiles(batch, px, device)
    r = _race(
        {
            "single": lambda: single.predict(tiles),
            "looped": lambda: ens_looped.predict(tiles),
            "batched": lambda: ens_batched.predict(tiles),
            "mc_dropout": lambda: mc.predict(tiles),
        },
        reps,
        device,
    )
    out: dict[str, Any] = {"backbone": backbone, "tile_px": px, "batch": batch, "members": k}
    t_single = r["min"]["single"]
    out["single_s"] = t_single
    for mode in ("looped", "batched"):
        out[f"{mode}_s"] = r["min"][mode]
        out[f"{mode}_over_k_single"] = r["min"][mode] / (k * t_single)
        out[f"{mode}_over_k_single_median"] = r["median"][mode] / (k * r["median"]["single"])
    out["faster"] = "batched" if out["batched_s"] < out["looped_s"] else "looped"
    out["mc_dropout_T20_over_single"] = r["min"]["mc_dropout"] / t_single
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
        e = ensemble_ratio(device, backbone, px, batch, reps if backbone == "resnet_slim" else 3)
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
