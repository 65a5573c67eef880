"""What every benchmark records about where it ran."""

from __future__ import annotations

import datetime as dt
import os
import platform


def machine_info() -> dict:
    import numpy
    import timm
    import torch

    import autotransfer

    cuda = torch.cuda.is_available()
    try:  # the code that was measured
        import subprocess

        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # a copy without .git (a GPU machine)
        commit = os.environ.get("AUTOTRANSFER_COMMIT", "unknown")
    return {
        "commit": commit,
        "date": dt.date.today().isoformat(),
        "machine": os.environ.get("AUTOTRANSFER_MACHINE", platform.node()),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "autotransfer": autotransfer.__version__,
    }


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)
