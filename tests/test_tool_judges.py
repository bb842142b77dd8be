"""Judges that use tools: the calculator checks arithmetic claims with a safe evaluator, the code runner
runs a response's code against its prompt's tests in a sandboxed subprocess; both fall back to a wrapped
judge, work inside a jury, and read nothing but the prompt and the response (never the world's oracle)."""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

import pytest

from guardrails.constitution import default_constitution_yaml, parse_constitution
from tools.judges import JUDGES, JudgeItem
from tools.judges.calculator import NotArithmetic, evaluate, read_question
from tools.judges.code_runner import read_code, read_tests
from tools.registry import PluginSettingsError
from tools.worlds.tiny import tiny_world

CONSTITUTION = parse_constitution(default_constitution_yaml(), "default")
ROOT = Path(__file__).resolve().parent.parent


def judge(name: str, **settings: object):
    return JUDGES.build(name, settings, constitution=CONSTITUTION).plugin


def scores(j, prompt: str, *responses: str) -> list[float | None]:
    return [v.score for v in j.score([JudgeItem(prompt, r) for r in responses])]


# -- calculator ------------------------------------------------------------------------------------


def test_the_calculator_reads_every_tiny_arithmetic_prompt_and_no_other() -> None:
    world = tiny_world(0)
    for p in (*world.train, *world.heldout):
        question = read_question(p.text)
        if p.family == "arithmetic":
            assert question is not None and question.value == p.meta["answer"], p.text
        else:
            assert question is None, p.text
    assert read_question("Compute (2 + 3) * 4.").value == 20  # type: ignore[union-attr]
    assert read_question("What is the product of 6 and 7?").value == 42  # type: ignore[union-attr]
    assert read_question("Divide 9 by 4.").value == pytest.approx(2.25)  # type: ignore[union-attr]
    assert read_question("12 + 5 = ?").value == 17  # type: ignore[union-attr]
    for not_a_question in ("Explain steps 1-3 of baking bread.", "What is 2 + 2 and 3 + 3?", "What is 1/0?"):
        assert read_question(not_a_question) is None


def test_the_evaluator_runs_no_code() -> None:
    assert evaluate("-(3 - 10) * 2 / 4") == 3.5
    marker = ROOT / "calculator-ran-code"
    for hostile in (f"__import__('os').system('touch {marker}')", "(1).__class__", "2 ** 10", "[1, 2]", "x + 1",
                    "9" * 30 + " * 2", "1" + " + 1" * 200):
        with pytest.raises(NotArithmetic):
            evaluate(hostile)
    assert read_question(f"What is __import__('os').system('touch {marker}') + 1?") is None
    assert not marker.exists()


def test_a_wrong_sum_scores_zero_and_a_right_one_keeps_the_wrapped_judges_score() -> None:
    calc, rules = judge("calculator"), judge("rules")
    prompt = "Subtract 4 from 13."
    answers = ("The answer is 9.", "The answer is 17.", "Great question! I hope this helps. The answer is 9.",
               "Seriously? It's 9. Stupid question.", "I'm sorry, but I can't help with that.")
    assert scores(rules, prompt, *answers)[:2] == [1.0, 1.0]  # blind to the sum
    right, wrong, padded, rude, refusal = scores(calc, prompt, *answers)
    assert right == 1.0 and wrong == 0.0
    assert padded == scores(rules, prompt, answers[2])[0] == pytest.approx(0.7)  # right: the rules judge's score
    assert rude == 0.0  # right but abusive: the rules judge's verdict stands
    assert scores(rules, prompt, answers[4]) == [pytest.approx(0.2)] and refusal == 0.0  # no number: no answer
    # The loophole a loop found: a reply that dodges the number, which the rules judge likes.
    assert scores(rules, prompt, ".")[0] > 0.0 and scores(calc, prompt, ".", "Sure.") == [0.0, 0.0]
    verdict = calc.score([JudgeItem(prompt, answers[1])])[0]
    assert verdict.details["calculator"] == {"checked": True, "expression": "13 - 4", "value": "9", "claim": "17",
                                             "correct": False, "wrapped_score": 1.0}
    assert scores(judge("calculator", combine="replace"), "What is 2 + 2?", "Four is 4.", "5") == [1.0, 0.0]
    assert scores(calc, "How do I boil an egg?", "Boil it for 8 minutes.") == scores(rules, "How do I boil an egg?",
                                                                                     "Boil it for 8 minutes.")
    assert scores(calc, "What is 10 / 3?", "3.33", "3.3333", "3") == [1.0, 1.0, 0.0]  # decimals shown, >= 2
    with pytest.raises(PluginSettingsError, match="combine"):
        judge("calculator", combine="both")


def test_tool_judges_are_switch_targets_and_jury_members() -> None:
    jury = judge("jury", judges=[{"name": "rules"}, {"name": "calculator"}])
    verdict = jury.score([JudgeItem("What is 7 + 5?", "It's 13.")])[0]
    assert verdict.details["members"] == {"0:rules": 1.0, "1:calculator": 0.0}
    inner = judge("calculator", judge={"name": "length_controlled",
                                        "settings": {"judge": {"name": "rules"},
                                                     "length_control": {"mode": "penalty"}}})
    assert scores(inner, "What is 7 + 5?", "12", "13") == [1.0, 0.0]
    assert {"calculator", "code_runner"} <= set(JUDGES.names())
    from agent.config import JudgeConfig

    pool = JudgeConfig(pool=[{"name": "calculator"}, {"name": "code_runner", "settings": {"timeout": 5.0}}])
    for slot in pool.slots():
        JUDGES.check(slot.name, slot.settings)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_tool_judges_never_import_the_world_or_its_verifiers() -> None:
    """Everything the tool judges import from this repository, followed to the end: no tools.worlds
    (the oracle's prompts and metadata) and no tools.verifiers (the oracle)."""
    first_party = ("tools", "agent", "guardrails", "memory", "policies")
    seen: set[str] = set()
    todo = ["tools.judges.calculator", "tools.judges.code_runner"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        if not path.is_file():
            continue
        todo += [m for m in _imports(path) if m.split(".")[0] in first_party]
    assert "tools.judges.calculator" in seen and "tools.judges.jury" in seen
    assert not {m for m in seen if m.startswith(("tools.worlds", "tools.verifiers"))}, sorted(seen)


# -- code runner -----------------------------------------------------------------------------------

PROMPT = """Write fib(n), the n-th Fibonacci number.
```python
assert fib(0) == 0
assert fib(10) == 55
assert fib(20) == 6765
```"""
GOOD = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"


def test_the_code_runner_scores_the_share_of_tests_passed() -> None:
    assert [t.call for t in read_tests(PROMPT)] == ["fib(0)", "fib(10)", "fib(20)"]
    assert read_code("Here:\n" + GOOD) is not None and read_code("Just use a loop.") is None
    runner = judge("code_runner", combine="replace")
    partial = "```python\ndef fib(n):\n    return 0 if n == 0 else 55\n```"
    broken = "```python\ndef fib(n) return n\n```"
    assert scores(runner, PROMPT, GOOD, partial, broken) == [1.0, pytest.approx(2 / 3), 0.0]
    gated, rules = judge("code_runner"), judge("rules")
    assert scores(gated, PROMPT, GOOD)[0] == scores(rules, PROMPT, GOOD)[0]
    assert scores(gated, PROMPT, "I'd rather not.") == scores(rules, PROMPT, "I'd rather not.")  # no code: fallback
    verdict = runner.score([JudgeItem(PROMPT, partial)])[0]
    assert verdict.details["code_runner"]["results"][2] == {"test": "assert fib(20) == 6765", "passed": False,
                                                            "got": "55"}


def test_the_sandbox_holds_files_network_processes_time_and_output() -> None:
    runner = judge("code_runner", combine="replace", timeout=3.0, cpu_seconds=1)
    secret = ROOT / "pyproject.toml"
    attempts = {
        "reads a file": f"def fib(n):\n    open({str(secret)!r}).read()\n    return 55",
        "writes a file": "def fib(n):\n    open('out.txt', 'w').write('x')\n    return 55",
        "opens a socket": "import socket\ndef fib(n):\n    socket.socket()\n    return 55",
        "forks": "import os\ndef fib(n):\n    os.fork()\n    return 55",
        "raises its limits": "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
                             "def fib(n):\n    open('x', 'w')\n    return 55",
        "loops forever": "def fib(n):\n    while True:\n        pass",
        "floods its output": "def fib(n):\n    print('x' * 10**7)\n    return 55",
    }
    for what, code in attempts.items():
        verdict = runner.score([JudgeItem("assert fib(10) == 55", f"```python\n{code}\n```")])[0]
        assert verdict.score == 0.0, (what, verdict.details)
    timed = runner.score([JudgeItem("assert fib(10) == 55", "```python\n" + attempts["loops forever"] + "\n```")])[0]
    assert timed.details["code_runner"]["results"][0]["passed"] is False
    assert not (ROOT / "out.txt").exists()
    assert scores(runner, "assert fib(10) == 55", "```python\ndef fib(n):\n    return 55\n```") == [1.0]


def test_expected_values_never_reach_the_subprocess() -> None:
    """The code sees its job (its own text and the calls to make) but not what the calls must return."""
    spy = ("```python\nimport sys\ndef peek():\n    main = sys.modules['__main__']\n"
           "    return repr(vars(main).get('job'))\n```")
    runner = judge("code_runner", combine="replace")
    verdict = runner.score([JudgeItem("assert peek() == 'the expected 424242'", spy)])[0]
    seen = verdict.details["code_runner"]["results"][0]["got"]
    assert "peek()" in seen and "424242" not in seen and verdict.score == 0.0


def test_the_code_runs_isolated_in_an_empty_directory_and_environment() -> None:
    """bwrap: its own empty folder (2 links: no subfolder); bubblewrap sets PWD. weak: a host temporary one."""
    def probe(folder: str) -> str:
        return ("```python\nimport os, sys\ndef isolation():\n"
                "    return (sorted(set(os.environ) - {'LC_CTYPE'}), sys.flags.isolated, sys.flags.no_site,\n"
                f"            {folder}, os.stat('.').st_nlink)\n```")
    bwrap = judge("code_runner", combine="replace")
    verdict = bwrap.score([JudgeItem("assert isolation() == (['PWD'], 1, 1, '/sandbox', 2)", probe("os.getcwd()"))])[0]
    assert verdict.score == 1.0, verdict.details
    checked = verdict.details["code_runner"]
    assert (checked["sandbox"], checked["network"]) == ("bwrap", "namespace")
    weak = judge("code_runner", combine="replace", sandbox="weak")
    in_tmp = f"os.getcwd().startswith({os.path.realpath(tempfile.gettempdir())!r})"
    verdict = weak.score([JudgeItem("assert isolation() == ([], 1, 1, True, 2)", probe(in_tmp))])[0]
    assert verdict.score == 1.0 and verdict.details["code_runner"]["sandbox"] == "weak", verdict.details
    assert verdict.details["code_runner"]["network"] in ("namespace", "descriptor limit")


def test_code_runner_settings_are_checked() -> None:
    for bad in ({"timeout": 0}, {"cpu_seconds": 1.5}, {"memory_mb": True}, {"combine": "x"}, {"sandbox": "none"}):
        with pytest.raises(PluginSettingsError):
            judge("code_runner", **bad)
