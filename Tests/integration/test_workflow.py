"""Workflow definitions from the CLI (docs/WORKFLOWS.md): `banyan workflow validate` accepts the
examples and refuses a bad definition at its file:line:column with a hint, exit code 1."""
from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_the_examples_validate(run_banyan, example):
    r = run_banyan("workflow", "validate", str(EXAMPLES / example))
    assert r.returncode == 0 and r.stdout.startswith("workflow validate: ok: "), r.describe()


def test_a_bad_definition_is_refused_where_it_is_wrong(run_banyan, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "nightly-build.yaml").read_text().replace("needs: [report]", "needs: [reprot]"))
    r = run_banyan("workflow", "validate", str(bad))
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and lines[0] == f'{bad}:23:13: tasks[3].needs[0]: no task has id "reprot"', r.describe()
    assert lines[1].strip() == "needs: [reprot]" and lines[2].index("^") == lines[1].index("reprot"), r.describe()
    assert 'did you mean "report"?' in r.stderr
    r = run_banyan("workflow", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stderr, r.describe()
