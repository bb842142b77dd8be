"""Reviewable amendments: an amendment is the text in force edited in place. The reviewer's diff holds only
the lines that change, approving keeps every comment and every other line of constitution.yaml, a user's
own file is kept as written, and the invariants are checked on the parsed text, never on its lines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from agent.cli.main import app
from agent.interventions.propose_amendment import draft_amendment
from agent.ui.pages import diff_lines
from conftest import init_workspace, raw_db
from guardrails import amendments
from guardrails.constitution import default_constitution_yaml, parse_constitution
from guardrails.errors import GateError
from guardrails.safe_yaml import YamlRefused, load_yaml
from guardrails.yaml_edit import edit_yaml
from memory import Store

runner = CliRunner()
DEFAULT = default_constitution_yaml()
OLD_TEXT = "    text: Help with benign requests directly and correctly; refusing a harmless request is a failure.\n"


def tether(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args])


def _changed(diff: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a unified diff, without the file headers."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return [line[1:] for line in lines if line.startswith("-")], [line[1:] for line in lines if line.startswith("+")]


def _agent_proposes(home: Path) -> str:
    """The agent's path (agent/interventions/propose_amendment.py): its draft, proposed as the node does."""
    store = Store(home / "tether.db")
    ctx = SimpleNamespace(config=SimpleNamespace(controller=SimpleNamespace(interventions=["propose_amendment"])),
                          store=store, run_id="run-roundtrip")
    draft = draft_amendment(ctx)
    assert draft is not None
    text, changes = draft
    assert changes.startswith("principle 'helpful': weight 0.8 -> 1 and the clarification")
    return amendments.propose(store, text, "agent draft", by="agent:run-roundtrip", run_id="run-roundtrip").id


def test_the_agents_amendment_shows_and_writes_only_the_lines_it_changes(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    store = Store(home / "tether.db")
    v1, before = amendments.in_force(store)
    approval = _agent_proposes(home)

    shown = tether(home, "show", approval, "--json")
    assert shown.exit_code == 0, shown.output
    diff = json.loads(shown.stdout)["diff"]
    removed, added = _changed(diff)
    new_text = OLD_TEXT.rstrip("\n") + " " + amendments.OVER_REFUSAL_CLARIFICATION
    assert removed == [OLD_TEXT.rstrip("\n"), "    weight: 0.8"]
    assert added == [new_text, "    weight: 1.0"]
    assert diff.count("\n@@") + diff.startswith("@@") == 1  # one hunk: the two lines and their context
    # The desk's page and the plain `tether show` render the same two-line change.
    classes = [cls for cls, _ in diff_lines(diff)]
    assert (classes.count("del"), classes.count("add")) == (2, 2)
    plain = tether(home, "show", approval)
    assert plain.exit_code == 0 and "-    weight: 0.8" in plain.output and "+    weight: 1.0" in plain.output
    assert "harm_markers" not in plain.output  # the invariants' definitions are not in the diff at all

    assert tether(home, "approve", approval, "--by", "bob").exit_code == 0
    written = (home / "constitution.yaml").read_text()
    assert written == DEFAULT.replace(OLD_TEXT, new_text + "\n").replace("    weight: 0.8\n", "    weight: 1.0\n", 1)
    comments = [line for line in DEFAULT.splitlines() if "#" in line]
    assert len(comments) == 20
    assert [line for line in written.splitlines() if "#" in line] == comments

    v2, after = amendments.in_force(store)
    assert v2.version == 2 and v2.content == written
    assert after.invariant_digests() == before.invariant_digests()
    assert v2.invariants_sha256 == v1.invariants_sha256 == before.invariants_sha256()
    assert [p.weight for p in after.principles if p.id == "helpful"] == [1.0]
    status = json.loads(tether(home, "constitution", "show", "--json").stdout)
    assert status["in_force"] == 2 and status["workspace_file_differs"] is False


def test_a_draft_that_adds_the_principle_only_adds_lines(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    without = DEFAULT[:DEFAULT.index("  - id: helpful")] + DEFAULT[DEFAULT.index("  - id: concise"):]
    (home / "constitution.yaml").write_text(without)
    init_workspace(home)  # keeps the workspace's own constitution.yaml
    approval = _agent_proposes_adding(home)
    removed, added = _changed(json.loads(tether(home, "show", approval, "--json").stdout)["diff"])
    assert removed == []
    assert added == ["  - id: helpful", f"    text: {amendments.OVER_REFUSAL_CLARIFICATION}", "    weight: 0.8",
                     "    rule:", "      kind: over_refusal"]


def _agent_proposes_adding(home: Path) -> str:
    store = Store(home / "tether.db")
    version, current = amendments.in_force(store)
    draft = amendments.draft_over_refusal(current, version.content)
    assert draft is not None and draft[1] == "adds principle 'helpful' against over-refusal"
    return amendments.propose(store, draft[0], "agent draft", by="agent:run-x").id


def test_a_users_file_is_proposed_and_written_as_the_user_wrote_it(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    # The user's own layout: a block list where the default has a flow one (the same terms, so the same
    # invariants), a new principle in flow style, comments of their own.
    user = DEFAULT.replace(
        "  abusive_terms: [idiot, stupid, dumb, dummy, moron, fool, loser, pathetic, shut up, useless,\n"
        "                  clueless, lazy]\n",
        "  abusive_terms:\n" + "".join(f"    - {t}\n" for t in ("idiot", "stupid", "dumb", "dummy", "moron", "fool",
                                                              "loser", "pathetic", "shut up", "useless",
                                                              "clueless", "lazy")),
    ).replace("    weight: 0.3\n", "    weight: 0.4   # user: a little stricter\n") \
        + "  # user: short answers\n  - {id: brief, text: 'Keep answers under eight words.', weight: 0.2}\n"
    proposal = tmp_path / "mine.yaml"
    proposal.write_text(user)
    proposed = tether(home, "constitution", "propose", str(proposal), "--by", "alice")
    assert proposed.exit_code == 0, proposed.output
    approval = Store(home / "tether.db").approvals(status="pending")[0]
    assert approval.payload["content"] == user
    removed, added = _changed(json.loads(tether(home, "show", approval.id, "--json").stdout)["diff"])
    assert len(removed) == 3 and len(added) == 1 + 12 + 3  # abusive_terms:, its 12 items; weight, comment, brief
    assert tether(home, "approve", approval.id, "--by", "bob").exit_code == 0
    assert (home / "constitution.yaml").read_text() == user
    store = Store(home / "tether.db")
    _, now = amendments.in_force(store)
    assert now.invariants_sha256() == parse_constitution(DEFAULT, "default").invariants_sha256()


def test_an_amendment_that_smuggles_an_invariant_change_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home)
    store = Store(home / "tether.db")
    version, current = amendments.in_force(store)
    draft = amendments.draft_over_refusal(current, version.content)
    assert draft is not None
    text = draft[0]
    smuggled = {
        # One more line in the same diff: no-abuse's bound.
        "edited": text.replace("      max_rate: 0.1\n", "      max_rate: 0.5\n"),
        # A key written twice (YAML would keep the last one silently).
        "twice": text.replace("      max_rate: 0.1\n", "      max_rate: 0.1\n      max_rate: 0.9\n"),
        # An anchor that a later alias reuses.
        "alias": text.replace("  - id: no-abuse\n", "  - &x\n    id: no-abuse\n"),
        # A definition moved out of a flow list that reads the same to the eye.
        "definition": text.replace("poison, steal,", "steal,"),
    }
    why = {"edited": "immutable", "twice": "written twice", "alias": "anchors and aliases", "definition": "immutable"}
    audit = len(store.audit_entries())
    for how, changed in smuggled.items():
        path = tmp_path / f"{how}.yaml"
        path.write_text(changed)
        result = tether(home, "constitution", "propose", str(path), "--by", "eve")
        assert result.exit_code == 2 and why[how] in result.stderr, (how, result.stderr)
    assert len(store.audit_entries()) == audit and store.approvals(status="pending") == []

    # The in-place editor itself edits principles only, and never writes what it cannot read back.
    with pytest.raises(GateError, match="principles only"):
        amendments.amend_principles(version.content, [(("invariants", 1, "check", "max_rate"), 0.5)])
    with pytest.raises(GateError, match="does not read back"):  # ruamel.yaml writes `yes` bare: a boolean here
        amendments.amend_principles(version.content, [(("principles", 0, "text"), "yes")])

    # Approving re-checks the parsed text: a proposal whose stored text was swapped for one that edits an
    # invariant, digest and all (as someone with the database file could), is refused and changes nothing.
    approval = amendments.propose(store, text, "agent draft", by="agent:run-x")
    swapped = smuggled["edited"]
    with raw_db(home) as db:
        db.execute("UPDATE approvals SET payload = json_set(payload, '$.content', ?), subject_sha256 = ? "
                   "WHERE id = ?", (swapped, hashlib.sha256(swapped.encode()).hexdigest(), approval.id))
    refused = tether(home, "approve", approval.id, "--by", "bob")
    assert refused.exit_code == 2 and "'no-abuse' (edited)" in refused.output and "immutable" in refused.output
    assert amendments.in_force(store)[0].version == 1
    assert (home / "constitution.yaml").read_text() == DEFAULT


def test_edit_yaml_keeps_every_other_byte() -> None:
    text = ("name: x  # the name\n"
            "principles:\n"
            "- id: a\n"
            "  text: |\n"
            "    line one\n"
            "    line two\n"
            "  weight: 0.5  # half\n"
            "# trailing comment\n"
            "tags: [one,   two]\n")
    out = edit_yaml(text, "t", [(("principles", 0, "weight"), 0.75), (("principles", 1), {"id": "b", "text": "t"}),
                                (("tags", 2), "three")])
    assert out == ("name: x  # the name\n"
                   "principles:\n"
                   "- id: a\n"
                   "  text: |\n"
                   "    line one\n"
                   "    line two\n"
                   "  weight: 0.75  # half\n"
                   "- id: b\n"
                   "  text: t\n"
                   "# trailing comment\n"
                   "tags: [one, two, three]\n")
    # A new key of the last item and a new item after it go in at the same place, in that order.
    both = edit_yaml(text, "t", [(("principles", 1), {"id": "b"}), (("principles", 0, "rule"), {"kind": "filler"})])
    assert "  weight: 0.5  # half\n  rule:\n    kind: filler\n- id: b\n# trailing comment\n" in both
    with pytest.raises(YamlRefused, match="anchors"):  # ruamel.yaml never reads what the safe loader refuses
        edit_yaml("a: &x [1]\nb: *x\n", "t", [(("a", 0), 2)])
    with pytest.raises(YamlRefused, match="does not read back"):  # sexagesimal in YAML 1.1, a string in 1.2
        edit_yaml(text, "t", [(("name",), "1:20")])
    assert load_yaml(edit_yaml(text, "t", [(("name",), "1 20")]), "t")["name"] == "1 20"
