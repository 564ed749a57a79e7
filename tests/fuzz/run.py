"""Coverage-guided fuzzing of one parser with atheris (libFuzzer underneath).

    python tests/fuzz/run.py <target> [libFuzzer options]   # e.g. -runs=1000000 -max_total_time=600

Targets are in ``targets.py``. The seed corpus ``corpus/<target>/`` is read first; new inputs
that reach new code are written to ``corpus/<target>-new/`` (review before adding them to the
seeds). ``fuzz.dict`` (values that broke parsers before) is used unless ``-dict=`` is given.
A crash leaves ``crash-*`` with the input in the working folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in _targets():
        sys.stderr.write(f"usage: run.py <{'|'.join(sorted(_targets()))}> [libFuzzer options]\n")
        return 2
    import atheris  # not needed to import the targets or replay the corpus

    name = argv[1]
    with atheris.instrument_imports():
        from targets import TARGETS
    grown = HERE / "corpus" / f"{name}-new"
    grown.mkdir(exist_ok=True)
    options = argv[2:]
    if not any(o.startswith("-dict=") for o in options):
        options.append(f"-dict={HERE / 'fuzz.dict'}")
    atheris.Setup([argv[0], *options, str(grown), str(HERE / "corpus" / name)], TARGETS[name])
    atheris.Fuzz()
    return 0


def _targets() -> set[str]:
    return {p.name for p in (HERE / "corpus").iterdir() if p.is_dir() and not p.name.endswith("-new")}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main(sys.argv))
