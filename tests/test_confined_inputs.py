"""Confined inputs, as an attacker who prepared a workspace would try them, through the real CLI: a data
file linked to a reviewer's private key, `../` and absolute paths out of the workspace, a linked folder
out of it, a 200 MB line, a 300 MiB file, a config or a probe file linked to a key. `tether validate` and
`tether run` refuse each with exit 2, naming the file, where it resolved to and the fix, and write
nothing; a file inside a data root the config lists is read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tracemalloc
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import init_workspace, tether_cli, write_test_config
from guardrails.constitution import default_constitution_yaml
from guardrails.inputs import InputLimits, InputRefused, read_lines
from memory import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data_world"
PEM_HEADER = "-----BEGIN PRIVATE KEY-----"
SETTINGS = {"family_field": "family", "reference_field": "reference"}
SMALL = {"generation": {"samples_per_prompt": 3, "max_new_tokens": 16}, "evaluation": {"max_new_tokens": 16},
         "prompts": {"per_round": 12, "heldout": 12},
         "controller": {"rounds": 1, "interventions": [], "heldout_metric": "judge"}}
BIG = 200 * 1000 * 1000  # the attack's 200 MB line: a sparse file, one line of zero bytes


def _constitution(probes: str) -> str:
    """The default one, the harm invariant checked on `probes`; bounds at 1.0 so that a small held-out slice
    can evaluate every invariant (this file is about what is read, not about the tiny model passing)."""
    doc = yaml.safe_load(default_constitution_yaml())
    for inv in doc["invariants"]:
        inv["check"].update(max_rate=1.0, ratchet=False)
    next(i for i in doc["invariants"] if i["id"] == "refuse-serious-harm")["probes"] = probes
    return yaml.safe_dump(doc, sort_keys=False)


def _workspace(base: Path, model_dir: Path, harm_probes: Path | None = None) -> Path:
    """base/ws (the data world's example files in data/, the harm invariant's probes in data/harm.jsonl,
    by default a copy of the example's) and base/outside (a copy of the prompts, outside the workspace)."""
    home, outside = base / "ws", base / "outside"
    (home / "data").mkdir(parents=True)
    outside.mkdir()
    for folder in (home / "data", outside):
        shutil.copy(EXAMPLE / "prompts.jsonl", folder / "prompts.jsonl")
    harm = home / "data" / "harm.jsonl"
    harm.symlink_to(harm_probes) if harm_probes else shutil.copy(EXAMPLE / "probes.jsonl", harm)
    (home / "constitution.yaml").write_text(_constitution("data/harm.jsonl"))  # init keeps it: v1
    init_workspace(home)
    write_test_config(home, model_dir, **SMALL, world={"name": "data", "settings": {
        **SETTINGS, "train": "data/prompts.jsonl"}})
    return home


def _case(home: Path, name: str, inputs: dict | None = None, **settings: object) -> Path:
    """A config beside the workspace's: the same, with these world settings and `inputs` section."""
    doc = yaml.safe_load((home / "config.yaml").read_text())
    doc["world"]["settings"] = {**SETTINGS, **settings}
    if inputs is not None:
        doc["inputs"] = inputs
    path = home / f"case-{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _snapshot(home: Path) -> dict[str, str]:
    """Every workspace file's digest (links as their target) and the store's whole content, audit log included."""
    files = {str(p.relative_to(home)): os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(home.rglob("*"))
             if (p.is_file() or p.is_symlink()) and not p.name.startswith("tether.db")}
    with closing(sqlite3.connect(home / "tether.db")) as db:
        files["tether.db"] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
    return files


def _cli(home: Path, *args: str) -> tuple[int, str]:
    """The real `tether` app in this process (a subprocess per case would re-import torch each time):
    (exit code, stderr with its line wrapping undone)."""
    from agent.cli.main import app

    result = CliRunner().invoke(app, ["--home", str(home), *args])
    return result.exit_code, " ".join(result.stderr.split())


def _refused(home: Path, config: Path, *needles: str) -> None:
    """`validate` and `run` both exit 2 with every needle in the message, and the workspace is unchanged."""
    before = _snapshot(home)
    with Store(home / "tether.db") as store:
        audit = len(store.audit_entries())
    for command in (["validate", str(config)], ["run", "--config", str(config)]):
        code, message = _cli(home, *command)
        assert code == 2, (command, message)
        for needle in needles:
            assert needle in message, (command, needle, message)
        if command[0] == "run":
            assert "nothing was started" in message, message
    assert _snapshot(home) == before
    _nothing_ran(home, audit)


def _nothing_ran(home: Path, audit: int | None = None) -> None:
    with Store(home / "tether.db") as store:
        assert store.list_runs() == []
        assert audit is None or len(store.audit_entries()) == audit
    with closing(sqlite3.connect(home / "tether.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone() == (0,)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_random_model_dir: Path) -> Path:
    """The workspace with the attacker's links in it: data/notes.csv -> alice's private key, data/shared ->
    the folder outside."""
    home = _workspace(tmp_path_factory.mktemp("confined"), tiny_random_model_dir)
    (home / "data" / "notes.csv").symlink_to(Path(os.environ["TETHER_KEYS_DIR"]).resolve() / "alice.pem")
    (home / "data" / "shared").symlink_to((home.parent / "outside").resolve(), target_is_directory=True)
    return home


def test_a_data_file_linked_to_a_reviewer_key_is_refused_and_the_key_never_read(home: Path) -> None:
    keys_dir = Path(os.environ["TETHER_KEYS_DIR"]).resolve()
    key = keys_dir / "alice.pem"
    config = _case(home, "key", train="data/notes.csv", prompt_field=PEM_HEADER, family_field=None,
                   reference_field=None)
    before = _snapshot(home)
    body = key.read_text().splitlines()[1]
    for args in (["validate", str(config)], ["run", "--config", str(config)]):
        result = tether_cli(home, *args)  # the attack as a person would meet it: the installed CLI
        message = " ".join(result.stderr.split())
        assert result.returncode == 2, (args, result.stderr)
        assert (f"world.settings.train: {home / 'data' / 'notes.csv'} resolves to {key}, which is inside the "
                f"reviewer key folder {keys_dir}") in message
        assert body not in result.stderr + result.stdout
    assert _snapshot(home) == before
    _nothing_ran(home)
    # Listing the key folder as a data root does not open it.
    config = _case(home, "key-root", inputs={"roots": [str(keys_dir)]}, train=str(key), prompt_field=PEM_HEADER,
                   family_field=None, reference_field=None)
    _refused(home, config, f"{key} is inside the reviewer key folder {keys_dir}")


def test_paths_out_of_the_workspace_are_refused_with_the_fix(home: Path) -> None:
    outside = (home.parent / "outside").resolve()
    fix = "copy it into the workspace, or add its folder to the config's data roots (inputs.roots)"
    escape = f"resolves to {outside / 'prompts.jsonl'}, which is outside every folder it may be read from"
    # a relative path is the config's folder's, made absolute when the config loads: `..` is gone by then
    absolute = f"{outside / 'prompts.jsonl'} is outside every folder it may be read from"
    _refused(home, _case(home, "dotdot", train="../outside/prompts.jsonl"), absolute, fix)
    _refused(home, _case(home, "absolute", train=str(outside / "prompts.jsonl")), absolute, fix)
    _refused(home, _case(home, "linked-folder", train="data/shared/prompts.jsonl"),
             f"{home / 'data' / 'shared' / 'prompts.jsonl'} {escape}", fix)
    _refused(home, _case(home, "world-probes", train="data/prompts.jsonl",
                         probes={"no-abuse": "../outside/prompts.jsonl"}), "world.settings.probes.no-abuse", absolute)


def test_a_file_inside_a_listed_data_root_is_read(home: Path) -> None:
    outside = home.parent / "outside"
    cases = {name: _case(home, name, inputs={"roots": ["../outside"]}, train=train)
             for name, train in (("root", "../outside/prompts.jsonl"), ("root-linked", "data/shared/prompts.jsonl"),
                                 ("root-absolute", str(outside / "prompts.jsonl")))}
    before = _snapshot(home)
    for name, config in cases.items():
        code, message = _cli(home, "validate", str(config))
        assert code == 0, (name, message)
    assert _snapshot(home) == before


def test_oversized_lines_and_files_are_refused_naming_file_and_line(home: Path) -> None:
    outside = home.parent / "outside"
    with (outside / "line.jsonl").open("wb") as fh:  # one 200 MB line, written sparse: nothing on disk
        fh.truncate(BIG)
    with (outside / "huge.jsonl").open("wb") as fh:
        fh.truncate(300 * 2**20)
    rows = (EXAMPLE / "prompts.jsonl").read_text().splitlines()
    (home / "data" / "long.jsonl").write_text("\n".join([rows[0], rows[1][:-1] + ', "pad": "' + "x" * 4096 + '"}',
                                                          *rows[2:]]) + "\n")
    roots = {"roots": ["../outside"]}
    _refused(home, _case(home, "line", roots, train="../outside/line.jsonl"),
             f"{(outside / 'line.jsonl').resolve()} line 1 is longer than the 1048576 bytes an input line may hold "
             "(inputs.max_line_bytes)")
    _refused(home, _case(home, "file", roots, train="../outside/huge.jsonl"),
             f"{(outside / 'huge.jsonl').resolve()} is 300.0 MiB, over the 256.0 MiB limit for an input file "
             "(inputs.max_file_bytes)")
    _refused(home, _case(home, "line-limit", {"max_line_bytes": 2048}, train="data/long.jsonl"),
             "long.jsonl line 2 is longer than the 2048 bytes")
    _refused(home, _case(home, "file-limit", {"max_line_bytes": 1024, "max_file_bytes": 4096},
                         train="data/prompts.jsonl"), "prompts.jsonl is", "bytes, over the 4096 bytes limit")


def test_a_config_linked_to_a_key_is_refused(home: Path) -> None:
    key = Path(os.environ["TETHER_KEYS_DIR"]).resolve() / "alice.pem"
    (home / "case-linked.yaml").symlink_to(key)
    _refused(home, home / "case-linked.yaml", f"config: {home / 'case-linked.yaml'} resolves to {key}, which is "
             "inside the reviewer key folder")


def test_a_constitution_probe_file_linked_to_a_key_is_refused(tmp_path: Path, tiny_random_model_dir: Path) -> None:
    key = Path(os.environ["TETHER_KEYS_DIR"]).resolve() / "alice.pem"
    home = _workspace(tmp_path, tiny_random_model_dir, harm_probes=key)
    _refused(home, home / "config.yaml", "invariant 'refuse-serious-harm': probe file data/harm.jsonl: "
             f"{home / 'data' / 'harm.jsonl'} resolves to {key}, which is inside the reviewer key folder")


def test_a_long_line_is_refused_after_reading_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "line.jsonl"
    with path.open("wb") as fh:
        fh.truncate(BIG)
    tracemalloc.start()
    try:
        with pytest.raises(InputRefused, match=r"line\.jsonl line 1 is longer than the 1048576 bytes"):
            for _ in read_lines(path, InputLimits(), "train"):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # the 200 MB line was never held: a bounded piece of it was
    line = json.dumps({"prompt": "x" * 1024})  # a line of exactly the limit passes, whatever its ending
    (tmp_path / "ok.jsonl").write_bytes(f"{line}\r\n{line}\n{line}".encode())
    assert [n for n, _ in read_lines(tmp_path / "ok.jsonl", InputLimits(line_bytes=len(line)), "train")] == [1, 2, 3]
    with pytest.raises(InputRefused, match="ok.jsonl line 1 is longer"):
        list(read_lines(tmp_path / "ok.jsonl", InputLimits(line_bytes=len(line) - 1), "train"))
