"""Average two lifters' weights: (1 - alpha) · A + alpha · B, parameter by parameter (batch-norm statistics too).

    python -m training.interpolate A.pt B.pt --alpha 0.7 --out core/weights/lifter_tcn.pt

B is a fine-tuning of A (same architecture). Interpolating between a network and its fine-tuning (WiSE-FT,
Wortsman et al., CVPR 2022) keeps much of what the fine-tuning gained on its new data while giving back little of
what A did well elsewhere: the shipped lifter is 0.7 of the way from the mocap-only network to the one fine-tuned
on rendered clips (core/weights/README.md says what each end and the blend measure).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from core.common.errors import WeightsMissing
from core.lift.model import TemporalModel, load_weights, save_weights


def interpolate(a: TemporalModel, b: TemporalModel, alpha: float) -> TemporalModel:
    """A new model whose floating-point parameters and buffers are (1 - alpha) · a + alpha · b (integer buffers,
    such as batch norm's step count, are b's). Raises WeightsMissing when the two differ in architecture."""
    if a.config != b.config:
        raise WeightsMissing("The two lifters have different architectures; only a network and its fine-tuning "
                             "can be averaged.", "Pass weights trained with the same --widths and --channels.")
    sa, sb = a.state_dict(), b.state_dict()
    mixed = {k: torch.lerp(sa[k].float(), sb[k].float(), alpha).to(sa[k].dtype) if sa[k].is_floating_point()
             else sb[k].clone() for k in sa}
    out = TemporalModel(**asdict(a.config))
    out.load_state_dict(mixed)
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.interpolate", description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="the starting network")
    p.add_argument("b", type=Path, help="its fine-tuning")
    p.add_argument("--alpha", type=float, required=True, help="0 = A, 1 = B")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        p.error("--alpha must be between 0 and 1")
    a, meta_a = load_weights(args.a)
    b, meta_b = load_weights(args.b)
    meta = {**meta_b, "interpolated": {"a": str(args.a), "b": str(args.b), "alpha": args.alpha,
                                       "a_config": meta_a.get("config"), "a_steps": meta_a.get("steps")}}
    meta.pop("evaluation", None)  # B's figures are not the blend's
    save_weights(args.out, interpolate(a, b, args.alpha), meta)
    print(f"{args.out}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
