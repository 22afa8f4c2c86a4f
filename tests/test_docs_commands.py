"""Every shell command shown in README.md and docs/**/*.md is exercised by a test or by CI, or parses.

A command is taken from ```bash / ```sh / ```shell blocks, from lines that start with ``python``,
``torchrun``, ``bash run_scripts`` (indented code), and from inline code spans that start so. Each one is
checked by what it names:

* ``python -m paxion.<m>``, ``python src/<f>.py``, ``python benchmarks/<f>.py``: the entry exists and its
  ``--help`` lists every ``--flag`` the command uses; ``--cfg-path`` / ``--config`` names a config that
  loads with :func:`paxion.config.load_config` together with the command's ``a.b=c`` overrides.
* ``torchrun`` / ``python -m torch.distributed.run``: the script it launches, checked as above.
* ``bash run_scripts/<s>.sh``: the script runs with a stand-in ``python`` that records what it would
  launch; the config it picks loads with the forwarded overrides.
* ``pip`` / ``pytest`` / ``conda``: what they install or run is what ``.ci/run`` does.

Commands too slow to run here are, in addition, mapped to the test that runs them (``RUN_BY``); the named
test must exist and each mapping must still match a shown command. Placeholders (``CONFIG.yaml``, ``RUN``,
``[a.b=c ...]``) are skipped, nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from paxion.config import load_config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell"}
START = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:nice -n \d+ )?(?:python3? |torchrun |bash run_scripts/|sbatch |pip |conda )")
PLACEHOLDER_CONFIGS = {"CONFIG.yaml", "CFG"}
PLACEHOLDER_OVERRIDES = {"a.b=c"}

# command pattern -> the test that runs it (reviewed by hand: the test runs the command's entry, or the function
# behind its argument parsing, on small data; the argument parsing itself is checked by check() as well)
RUN_BY = {
    r"^bash run_scripts/train\.sh$": "tests/test_embedded_default.py::test_patcher_learns_actions_the_backbone_lacks",
    r"^python -m paxion\.quickstart --eval-only\b": "tests/test_embedded_default.py::test_shipped_patcher_knows_actions",
    r"^bash run_scripts/eval_actionbench\.sh$": "tests/test_embedded_default.py::test_shipped_patcher_knows_actions",
    r"^python -m paxion\.quickstart --preset hard --eval-only": "tests/test_embedded_default.py::test_hard_preset_shipped_patcher_story",
    r"^python src/demo\.py$": "tests/test_demo.py::test_demo_without_arguments_prints_both_probabilities",
    r"^python src/inference\.py ": "tests/test_demo.py::test_inference_writes_frames_and_the_api_scores",
    r"^python -m paxion\.report ": "tests/test_report.py::test_report_has_every_chart",
    r"^(torchrun|python -m torch\.distributed\.run) .*configs/toy/": "tests/test_runner_dist.py::test_two_process_gloo_run",
    r"^python -m paxion\.tools\.swa ": "tests/test_techniques.py::test_swa_tool_averages_the_epoch_window",
    r"^python -m paxion\.tools\.open_vocab_protocol ": "tests/test_open_vocab.py::test_protocol_tool_reads_final_lines",
    r"^python -m paxion\.tools\.preprocess_videos ": "tests/test_data_preprocess.py::test_reencode_to_fps_and_size_then_skip",
    r"^python -m paxion\.data\.synthetic --preset hard": "tests/test_synthetic_hard.py::test_cli_preset_flag",
    r"^python -m paxion\.data\.synthetic\.openvclip_label_db ": "tests/test_open_vocab.py::test_synthaction_label_databases_split_classes",
    r"^python -m pytest -q (tests/)?test_official_weights\.py|tests/test_official_weights\.py$":
        "tests/test_official_weights.py::test_official_backbone_file_loads_and_runs",
}


def _join_continued(lines: list[str]) -> list[str]:
    out, buf = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    return out


def _clean(cmd: str) -> list[str]:
    """The command without its comment, one entry per ``&&``-joined part."""
    try:
        words = shlex.split(cmd, comments=True)
    except ValueError:  # an unbalanced quote in prose
        return []
    parts = " ".join(shlex.quote(w) if " " in w or "$" in w else w for w in words).split(" && ")
    return [p for p in parts if p]


def commands_of(path: Path) -> list[str]:
    """The page's shell commands, comments removed, continuation lines joined."""
    found, fence, block, prose = [], None, [], []
    for line in path.read_text().splitlines():
        marker = re.match(r"^\s*```(\w*)", line)
        if marker:
            if fence is None:
                fence, block = marker.group(1), []
            else:
                if fence in SHELL_FENCES:
                    found += [c for line in _join_continued(block) for c in _clean(line)]
                fence = None
            continue
        if fence is not None:
            block.append(line)
            continue
        prose.append(line)
    for line in _join_continued(prose):
        if START.match(line.strip()):
            found += _clean(line.strip())
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        span = " ".join(span.split())
        if START.match(span):
            found += _clean(span)
    return found


def all_commands() -> list[tuple[str, str]]:
    return [(p.relative_to(REPO).as_posix(), c) for p in PAGES for c in commands_of(p)]


# ---------------------------------------------------------------- what a command names

def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words[:2] == ["nice", "-n"]:
        words = words[3:]
    return env, words


def unbracket(words: list[str]) -> list[str]:
    """``[--reference X]`` and ``[a.b=c ...]`` are optional arguments: check what they name, drop ``...``."""
    return [w.strip("[]") for w in words if w.strip("[]") not in ("...", "")]


@lru_cache(maxsize=None)
def entry_help(kind: str, target: str) -> str:
    """``--help`` of a module or script, run in this process (no new interpreter, no torch re-import)."""
    out, argv, path = io.StringIO(), sys.argv, list(sys.path)
    try:
        sys.argv = [target, "--help"]
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            if kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=False)
            else:
                sys.path.insert(0, str((REPO / target).parent))
                runpy.run_path(str(REPO / target), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
    return out.getvalue()


def check_config(cfg: str | None, overrides: list[str], default: str | None = None) -> str:
    overrides = [o for o in overrides if o not in PLACEHOLDER_OVERRIDES]
    if cfg in PLACEHOLDER_CONFIGS:
        cfg = default  # a placeholder config: the overrides are still checked against the default one
    if cfg is None:
        assert not overrides, f"overrides {overrides} without a config to check them against"
        return "no config"
    path = Path(cfg) if Path(cfg).is_absolute() else REPO / cfg
    assert path.is_file(), f"config {cfg} does not exist"
    load_config(path, overrides)  # raises on an unknown key, a wrong type or an invalid value
    return f"config {path.relative_to(REPO)} loads with {overrides}"


def check_python_entry(words: list[str]) -> str:
    """``python -m M args`` or ``python FILE.py args`` (words start after ``python``)."""
    if words[:2] in (["-m", "torch.distributed.run"], ["-m", "paxion.cli.launch"]):  # launch = torchrun's arguments
        return check_launcher(words[2:])
    if words[0] == "-m":
        module, args = words[1], words[2:]
        if module == "pytest":
            return check_pytest(args)
        if module == "pip":
            return check_pip(args)
        import importlib.util

        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        kind, target = "module", module
    else:
        target, args = words[0], words[1:]
        assert (REPO / target).is_file(), f"no file {target}"
        kind = "file"
    args = unbracket(args)
    flags = [a.split("=")[0] for a in args if a.startswith("--")]
    if flags:
        helptext = entry_help(kind, target)
        for flag in flags:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helptext), f"{target} has no option {flag}"
    cfg = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--cfg-path", "--config")), None)
    overrides = [a for a in args if re.match(r"^[a-z_]+(\.[\w\-]+)+=", a)]
    default = None
    if target == "paxion.quickstart":
        from paxion.cli import quickstart

        preset = args[args.index("--preset") + 1] if "--preset" in args else "default"
        default = str(quickstart.config_path(quickstart.PRESETS[preset].train))
        cfg = cfg or default
    elif kind == "file" and cfg is None:  # a benchmark with its own default config
        named = re.search(r'DEFAULT_CONFIG\s*=\s*"(configs/[^"]+)"', (REPO / target).read_text())
        cfg = named and named.group(1)
    return f"{target}: " + check_config(cfg, overrides, default)


def check_launcher(words: list[str]) -> str:
    """torchrun's own options up to the script, then the script's command line."""
    i = 0
    while words[i].startswith("-"):
        i += 1 if "=" in words[i] or words[i] in ("--standalone",) else 2
    return "launched " + check_python_entry(words[i:])


def check_pytest(args: list[str]) -> str:
    ci = (REPO / ".ci" / "run").read_text()
    files = [a for a in args if a.endswith(".py") or "/" in a]
    for f in files:
        assert (REPO / f).is_file(), f"no test file {f}"
    if not files:
        line = "python -m pytest " + " ".join(args)
        assert re.search(rf"^{re.escape(line)}\s", ci, flags=re.M), f"'{line}' is not what .ci/run runs"
    return "pytest as in .ci/run"


def check_pip(args: list[str]) -> str:
    ci = (REPO / ".ci" / "run").read_text()
    assert args[0] == "install"
    for a in args[1:]:
        if a in ("-r", "-e", "--index-url"):
            continue
        assert a in ci, f"'{a}' is not what .ci/run installs"
    return "pip as in .ci/run"


def run_script(script: str, env: dict[str, str], args: list[str], tmp: Path) -> list[str]:
    """Run a run_scripts/*.sh with a stand-in python that records the command line it would start."""
    stub, record = tmp / "python", tmp / "argv"
    stub.write_text('#!/bin/sh\nif [ "$1" = "-c" ]; then echo 0; exit 0; fi\n'
                    'for a in "$@"; do printf "%s\\n" "$a"; done > "$STUB_RECORD"\n')
    stub.chmod(0o755)
    full_env = {**os.environ, **env, "PYTHON": str(stub), "STUB_RECORD": str(record)}
    proc = subprocess.run(["bash", str(REPO / script), *args], env=full_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return record.read_text().splitlines()


def check_run_script(env: dict[str, str], words: list[str], tmp: Path) -> str:
    script, args = words[0], unbracket(words[1:])
    assert (REPO / script).is_file(), f"no script {script}"
    text = (REPO / script).read_text()
    default = re.search(r"launch\.sh\"? \w+ (configs/\S+\.yaml)", text)
    argv = run_script(script, env, args, tmp)
    if argv[:2] == ["-m", "paxion.quickstart"]:
        return "runs " + check_python_entry(argv)
    assert argv[:2] == ["-m", "paxion.cli.launch"], argv  # torchrun behind the one-line error of cli/launch.py
    i = next(i for i, a in enumerate(argv) if a.endswith(".py"))
    assert argv[i + 1] == "--cfg-path"
    cfg = argv[i + 2]
    if Path(cfg).name in PLACEHOLDER_CONFIGS:
        cfg = Path(cfg).name
    return "launches " + check_config(cfg, argv[i + 3:], default and default.group(1))


def check(cmd: str, tmp: Path) -> list[str]:
    """What was checked for one command; raises AssertionError (or a config error) on a wrong one."""
    done = [f"run by {test}" for pattern, test in RUN_BY.items() if re.search(pattern, cmd)]
    env, words = split_env(shlex.split(cmd))
    head = words[0]
    if head in ("python", "python3"):
        done.append(check_python_entry(words[1:]))
    elif head == "torchrun":
        done.append(check_launcher(words[1:]))
    elif head == "bash" and words[1].startswith("run_scripts/"):
        done.append(check_run_script(env, words[1:], tmp))
    elif head == "sbatch":
        script = next(w for w in words if w.startswith("run_scripts/"))
        assert (REPO / script).is_file(), f"no script {script}"
        rest = unbracket(words[words.index(script) + 1:])
        done.append(check_config(rest[0] if rest and rest[0].endswith(".yaml") else None,
                                 [w for w in rest if "=" in w]))
    elif head == "pip":
        done.append(check_pip(words[1:]))
    elif head == "conda":
        assert words[1:4] == ["env", "create", "-f"] and (REPO / words[4]).is_file(), cmd
        done.append("conda environment file exists")
    return done


COMMANDS = all_commands()


def test_the_pages_show_commands():
    pages = {page for page, _ in COMMANDS}
    assert len(COMMANDS) > 60 and "README.md" in pages and "docs/systems/paxion.md" in pages


@pytest.mark.parametrize("page,cmd", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_command_is_run_or_parses(page, cmd, tmp_path):
    done = check(cmd, tmp_path)
    assert done, f"{page}: nothing checks `{cmd}`: map it to a test in RUN_BY or teach check() what it names"


def test_run_by_names_existing_tests_and_shown_commands():
    shown = [c for _, c in COMMANDS]
    for pattern, test in RUN_BY.items():
        file, name = test.split("::")
        assert re.search(rf"^def {name}\(", (REPO / file).read_text(), flags=re.M), f"{test} does not exist"
        assert any(re.search(pattern, c) for c in shown), f"RUN_BY pattern {pattern} matches no shown command"


@pytest.mark.parametrize("typo,message", [
    ("python src/evaluate.py --cfg-path configs/eval/actionbench/ssv2/patchr.yaml", "does not exist"),
    ("python -m paxion.train --cfg-path configs/toy/train.yaml run.max_epochs=5", "max_epochs"),
    ("python -m paxion.quickstart --eval-onyl", "no option --eval-onyl"),
    ("python -m paxion.evaluat --cfg-path configs/toy/eval.yaml", "no module"),
    ("python benchmarks/alpro_dem.py", "no file"),
    ("bash run_scripts/train.sh configs/toy/train.yaml run.precison=bf16", "precison"),
    ("torchrun --nproc_per_node=2 src/train.py --cfg-path configs/toy/trian.yaml", "does not exist"),
    ("python -m pytest -q -m slwo", "not what .ci/run runs"),
])
def test_a_typo_fails(typo, message, tmp_path):
    with pytest.raises(Exception, match=re.escape(message)):
        check(typo, tmp_path)


def test_readme_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), {})
    assert "[" in capsys.readouterr().out  # the two probability lists were printed
