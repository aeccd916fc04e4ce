"""`labclient --help` must stay fast: it may not import torch or mlflow."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys; print('\\n'.join(sys.modules))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(output.split())


def test_help_imports_neither_torch_nor_mlflow():
    loaded = _modules_after(
        "from labclient.cli.main import main\n"
        "for args in (['--help'], ['train', '--help'], ['fetch', '--help'], ['push', '--help'], ['compare', '--help'], "
        "['cache', 'ls', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass"
    )
    assert "labclient.cli.main" in loaded
    assert not {"torch", "mlflow"} & loaded


def test_importing_the_package_is_light():
    loaded = _modules_after("import labclient")
    assert not {"torch", "mlflow", "rich"} & loaded
