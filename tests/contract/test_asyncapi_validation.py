"""docs/asyncapi.yaml validates with the standard AsyncAPI parser (@asyncapi/parser, pinned
in tests/node/package-lock.json, installed by `make node-tools`), and the parser does
reject a broken document, so this check can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from shared import asyncapi
from shared.settings import REPO_ROOT

NODE_TOOLS = REPO_ROOT / "tests" / "node"
VALIDATOR = NODE_TOOLS / "validate-asyncapi.mjs"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node") or "/usr/bin/node"
    parser = NODE_TOOLS / "node_modules" / "@asyncapi" / "parser"
    assert parser.is_dir(), "the AsyncAPI parser is not installed: run `make node-tools`"
    return subprocess.run(
        [node, str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_document_validates_with_the_standard_asyncapi_parser() -> None:
    result = validate(asyncapi.DOCUMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid AsyncAPI 3.0.0" in result.stdout


def test_the_parser_rejects_a_document_with_a_dangling_reference(tmp_path: Path) -> None:
    document = yaml.safe_load(asyncapi.DOCUMENT.read_text())
    del document["components"]["messages"]["PlaceOrder"]
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(document))
    result = validate(broken)
    assert result.returncode == 1, result.stdout
    assert "#/components/messages/PlaceOrder" in result.stdout
    assert "INVALID" in result.stdout


def test_the_parser_rejects_a_document_that_breaks_the_asyncapi_schema(tmp_path: Path) -> None:
    document = yaml.safe_load(asyncapi.DOCUMENT.read_text())
    first = next(iter(document["operations"].values()))
    first["action"] = "publish"  # AsyncAPI 2's word; 3.0 knows send and receive
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(document))
    result = validate(broken)
    assert result.returncode == 1, result.stdout
    assert "action" in result.stdout
