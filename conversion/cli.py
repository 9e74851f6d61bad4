"""``nnunet-se-convert``: downloaded dataset -> nnU-Net raw dataset plus seeded splits."""

from __future__ import annotations

from collections.abc import Sequence

from nnunet_se.errors import UserError, run_cli


def _convert(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="nnunet-se-convert", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("dataset", choices=["isic2018", "kvasir", "busi"])
    parser.add_argument("source", help="extracted folder or official archive")
    parser.add_argument("--id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.parse_args(argv)
    raise UserError("conversion is not yet available in this version")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("nnunet-se-convert", _convert, argv)
