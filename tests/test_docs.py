"""Every code block of README.md and docs/*.md is run or parsed, so the documentation cannot drift from the code.

Each block carries a language tag, and the tag says how it is checked (docs/testing.md has the table). Every Python
block runs as written (a block marked as a continuation runs joined to the one it continues), and every README curl
line runs against a live server; every other block is parsed with a parser of its language, and the names its
Python imports are resolved. Relative links, and the headings they
point at, must exist. The whole file takes a few seconds.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import anyio
import httpx
import pytest

from sse_batcher.batcher import AggregationRules
from sse_batcher.server.client import unroll
from tests.frontend.browser import in_ci, require_node
from tests.server.live import make_config, serving
from tests.server_process import free_port, until_healthy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = (README, *sorted(DOCS.glob("*.md")))
BROWSER_CLIENT = ROOT / "frontend" / "sse-batcher.js"
# The address the README's examples use; the tests put a live server's in its place.
README_BASE_URL = "http://127.0.0.1:8000"

CHECKED_LANGUAGES = frozenset({"python", "sh", "bash", "toml", "json", "http", "js", "ini", "yaml", "nginx", "text"})
# The hops the data-flow sketch must name (the README's "How it works").
DATA_FLOW = ("emit()", "buffer", "flush", "aggregate", "PostgreSQL", "follower", "hub", "SSE")

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block: where it starts, its language tag and its text."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown page, in order.

    Raises:
        AssertionError: a block is never closed.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        assert i < len(lines), f"{path.relative_to(ROOT)}:{start}: the code block is never closed"
        blocks.append(Block(path, start, info.split()[0] if info else "", "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]


def blocks_of(*languages: str) -> list[Any]:
    return [pytest.param(block, id=block.where) for block in BLOCKS if block.lang in languages]


def readme_block(lang: str, containing: str = "") -> Block:
    """The README's first block of ``lang`` whose text contains ``containing``."""
    return next(b for b in BLOCKS if b.path == README and b.lang == lang and containing in b.text)


def _missing(what: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{what}; CI must run this test, not skip it", pytrace=False)
    pytest.skip(what)


# -- every block ---------------------------------------------------------------------------------


def test_every_block_has_a_language_tag_that_a_test_checks() -> None:
    assert len(BLOCKS) > 20
    untagged = [b.where for b in BLOCKS if b.lang not in CHECKED_LANGUAGES]
    assert not untagged, f"tag these blocks with one of {sorted(CHECKED_LANGUAGES)}: {untagged}"


# -- python --------------------------------------------------------------------------------------


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent is a module, not a package
        return False


def _exists(module: str, name: str) -> bool:
    return hasattr(importlib.import_module(module), name) or _is_module(f"{module}.{name}")


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_block_compiles_and_every_name_it_imports_exists(block: Block) -> None:
    tree = ast.parse(block.text, block.where)
    compile(tree, block.where, "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sse_batcher":
            assert node.module is not None
            missing = [alias.name for alias in node.names if not _exists(node.module, alias.name)]
            assert not missing, f"{block.where}: {node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sse_batcher":
                    importlib.import_module(alias.name)


# Just before a python block, this marks it as the continuation of the page's previous python block: the two run
# as one program. Every other python block is a whole program.
CONTINUES = "<!-- continues the python block above -->"


@dataclass(frozen=True, slots=True)
class Program:
    """A python block, with the blocks that continue it: what a reader would paste into one file."""

    first: Block
    text: str


def python_programs() -> list[Program]:
    """Every python block of the docs as a whole program, continuations joined to the block they continue.

    Raises:
        AssertionError: a continuation has no block before it.
    """
    programs: list[Program] = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        first_of_page = len(programs)
        for block in (b for b in BLOCKS if b.path == page and b.lang == "python"):
            if block.line >= 2 and lines[block.line - 2].strip() == CONTINUES:
                assert len(programs) > first_of_page, f"{block.where}: continues no python block"
                programs[-1] = Program(programs[-1].first, programs[-1].text + "\n" + block.text)
            else:
                programs.append(Program(block, block.text))
    return programs


def _example_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("SSE_")}
    return {**clean, "PYTHONPATH": path, **extra}


def _toml_before(block: Block) -> str:
    """The text of the last toml block above ``block`` on its page (the file a python example reads)."""
    return [b for b in BLOCKS if b.path == block.path and b.lang == "toml" and b.line < block.line][-1].text


@pytest.mark.parametrize(
    "program", [pytest.param(p, id=p.first.where) for p in python_programs() if "uvicorn.run(" not in p.text]
)
async def test_python_example_runs_as_written(program: Program, dsn: str, tmp_path: Path) -> None:
    text = program.text
    if "rules.toml" in text:
        (tmp_path / "rules.toml").write_text(_toml_before(program.first), encoding="utf-8")
    async with contextlib.AsyncExitStack() as stack:
        if README_BASE_URL in text:  # it talks to a running server: give it one
            server = await stack.enter_async_context(serving(make_config(dsn, tmp_path)))
            text = text.replace(README_BASE_URL, server.url.rstrip("/"))
        with anyio.fail_after(90):
            result = await anyio.run_process(
                [sys.executable, "-c", text], cwd=tmp_path, env=_example_env(), check=False
            )
    assert result.returncode == 0, f"{program.first.where}: {result.stderr.decode()}"
    for shown in re.findall(r"^# (\[.*\])$", text, re.M):  # a `# [...]` line shows what the line above prints
        assert shown in result.stdout.decode(), f"{program.first.where}: does not print {shown}"
    promised = _promised_output(program.first)
    if promised is not None:
        assert promised in result.stdout.decode(), f"{program.first.where}: does not print {promised}"


@pytest.mark.parametrize(
    "program", [pytest.param(p, id=p.first.where) for p in python_programs() if "uvicorn.run(" in p.text]
)
async def test_mount_example_serves_and_ctrl_c_ends_its_open_stream(program: Program, dsn: str, tmp_path: Path) -> None:
    port = free_port()
    text = program.text.replace("port=8000", f"port={port}")
    assert text != program.text, "the example serves on port 8000"
    env = _example_env(DATABASE_URL=dsn, SSE_DATA_DIR=str(tmp_path), SSE_SHUTDOWN_TIMEOUT_SECONDS="10")
    base = f"http://127.0.0.1:{port}/live"
    async with await anyio.open_process([sys.executable, "-c", text], cwd=tmp_path, env=env, stdout=None) as process:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await until_healthy(client, base, 60)
                async with client.stream("GET", f"{base}/events", timeout=None) as stream:
                    lines = stream.aiter_lines()
                    with anyio.fail_after(10):
                        assert (await anext(lines)).startswith("retry:")
                    process.send_signal(signal.SIGINT)
                    with anyio.fail_after(10):
                        async for _ in lines:
                            pass
                        assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _promised_output(block: Block) -> str | None:
    """What the sentence right after a block says it prints (`It prints `...``), if it says so."""
    text = block.path.read_text(encoding="utf-8")
    after = text.split(block.text, 1)[1].split("\n", 3)
    found = re.match(r"(?:It|On a fresh database it) prints `([^`]+)`", "\n".join(after[1:3]).strip())
    return None if found is None else found[1]


async def test_readme_python_example_runs_on_the_embedded_database_and_prints_what_the_readme_says(
    tmp_path: Path,
) -> None:
    block = readme_block("python")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # No DATABASE_URL: the example brings its own database (under the test's directory).
    env = {**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, "PYTHONPATH": path}
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", block.text], cwd=tmp_path, env=env, check=False)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    printed = stdout.strip()
    assert "JOBS_BATCH_PROGRESS" in printed, stdout
    assert f"`{printed}`" in README.read_text(encoding="utf-8"), f"the README should show what it prints: {printed}"


# -- sh ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("sh", "bash"))
def test_shell_block_parses(block: Block) -> None:
    result = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{block.where}: {result.stderr}"


def _commands(text: str) -> list[str]:
    """The commands of a shell block, continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _comment_after(text: str, command_start: str) -> list[str]:
    """The comment lines that follow the command starting with ``command_start``, without their ``# ``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(command_start))
    while lines[start].endswith("\\"):
        start += 1
    shown = []
    for line in lines[start + 1 :]:
        if not line.startswith("#"):
            break
        shown.append(line[2:])
    return shown


async def test_readme_curl_example_publishes_and_reads_the_event_back(dsn: str, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        _missing("curl is not installed")
    block = readme_block("sh", "curl -sN")
    publish, read = _commands(block.text)
    async with serving(make_config(dsn, tmp_path)) as server:
        base = server.url
        with anyio.fail_after(30):
            result = await anyio.run_process(["bash", "-c", publish.replace(README_BASE_URL, base)], check=False)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        shown_answer = json.loads(_comment_after(block.text, "curl -s -X POST")[0])
        assert answer.keys() == shown_answer.keys()
        assert answer["accepted"] == 1 and len(answer["ids"]) == 1
        message_id = answer["ids"][0]

        url = re.search(r"'(http://[^']+)'", read)
        assert url is not None, read
        lines: list[str] = []
        with anyio.fail_after(15):
            async with httpx.AsyncClient(timeout=10) as client:
                async with client.stream("GET", url[1].replace(README_BASE_URL, base)) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        lines.append(line)
                        if line.startswith("data:"):
                            break
    shown = _comment_after(block.text, "curl -sN")
    assert lines[:-1] == [*shown[:-3], f"id: {message_id}", shown[-2]], (lines, shown)
    got, expected = json.loads(lines[-1][len("data:") :]), json.loads(shown[-1][len("data:") :])
    assert got.keys() == expected.keys()
    assert {k: got[k] for k in ("type", "source", "data")} == {k: expected[k] for k in ("type", "source", "data")}


async def test_readme_first_screen_curl_lines_stream_and_publish(dsn: str, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        _missing("curl is not installed")
    watch, publish, publish_stored = _commands(readme_block("sh", "curl -N").text)
    assert "/events" in watch and "wait=stored" in publish_stored and "content-type: application/json" in publish
    async with serving(make_config(dsn, tmp_path)) as server:
        base = server.url.rstrip("/")
        stream = await anyio.open_process(["bash", "-c", "exec " + watch.replace(README_BASE_URL, base).rstrip("& ")])
        try:
            assert stream.stdout is not None
            seen = b""
            with anyio.fail_after(30):
                while b"retry:" not in seen:
                    seen += await stream.stdout.receive()
                answers = []
                for command in (publish, publish_stored):
                    done = await anyio.run_process(["bash", "-c", command.replace(README_BASE_URL, base)], check=False)
                    assert done.returncode == 0, done.stderr
                    answers.append(json.loads(done.stdout))
                while len(_hellos(seen)) < 2:  # one message each, or one aggregate of both
                    seen += await stream.stdout.receive()
        finally:
            stream.terminate()
            await stream.wait()
    assert answers[0]["accepted"] == 1 and "seqs" in answers[0]
    assert answers[1]["accepted"] == 1 and len(answers[1]["ids"]) == 1
    assert [e["data"] for e in _hellos(seen)] == [{"n": 1}, {"n": 2}]


def _hellos(stream: bytes) -> list[dict[str, Any]]:
    """The HELLO events in what ``curl -N`` printed so far, aggregates unrolled."""
    lines = stream.decode().splitlines()[:-1]  # the last line may still be incomplete
    events = [e for line in lines if line.startswith("data: ") for e in unroll(line[len("data: ") :])]
    return [e for e in events if e["type"] == "HELLO"]


# -- toml, json ----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("toml"))
def test_toml_block_parses_and_rules_load(block: Block, tmp_path: Path) -> None:
    data = tomllib.loads(block.text)
    if "types" in data or "default" in data:
        path = tmp_path / "rules.toml"
        path.write_text(block.text, encoding="utf-8")
        rules = AggregationRules.from_toml(path)
        for name in data.get("types", {}):
            assert name in rules.types, f"{block.where}: {name}"


@pytest.mark.parametrize("block", blocks_of("json"))
def test_json_block_parses(block: Block) -> None:
    json.loads(block.text)


# -- http ----------------------------------------------------------------------------------------


def _check_event_stream(body: str, where: str) -> None:
    for frame in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in frame.splitlines():
            if line.startswith(":"):
                continue
            name, colon, value = line.partition(": ")
            assert colon and name in {"id", "event", "data", "retry"}, f"{where}: not an SSE field: {line!r}"
            fields[name] = value
        if "id" in fields or "retry" in fields:
            assert (fields.get("id") or fields["retry"]).isdigit(), f"{where}: {frame!r}"
        if "data" in fields:
            payload = json.loads(fields["data"])
            assert payload["type"] == fields["event"], f"{where}: the event: line names the data's type"


@pytest.mark.parametrize("block", blocks_of("http"))
def test_http_block_is_a_message_whose_body_parses(block: Block) -> None:
    head, _, body = block.text.partition("\n\n")
    start, *header_lines = head.splitlines()
    assert re.fullmatch(r"HTTP/1\.1 \d{3} [A-Za-z ]+|[A-Z]+ /\S* HTTP/1\.1", start), f"{block.where}: {start!r}"
    headers = {}
    for line in header_lines:
        name, colon, value = line.partition(": ")
        assert colon and re.fullmatch(r"[A-Za-z-]+", name), f"{block.where}: not a header: {line!r}"
        headers[name.lower()] = value
    content_type = headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        _check_event_stream(body, block.where)
    elif content_type.startswith("application/json"):
        json.loads(body)
    else:
        assert not body.strip(), f"{block.where}: a body needs a content-type"


# -- js ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("js"))
def test_js_block_parses_and_imports_what_the_browser_client_exports(block: Block) -> None:
    node = require_node()
    result = subprocess.run(
        [node, "--input-type=module", "--check"], input=block.text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{block.where}: {result.stderr}"
    client = BROWSER_CLIENT.read_text(encoding="utf-8")
    exported = set(re.findall(r"^export (?:async )?(?:function|class|const|let) (\w+)", client, re.M))
    for names in re.findall(r'import\s*\{([^}]*)\}\s*from\s*"[./]*(?:static/)?sse-batcher\.js"', block.text):
        for name in (n.strip() for n in names.split(",")):
            assert name in exported, f"{block.where}: frontend/sse-batcher.js does not export {name}"


# -- ini, yaml, nginx, text ----------------------------------------------------------------------


@pytest.mark.parametrize("block", blocks_of("ini"))
def test_ini_block_parses_as_a_systemd_unit(block: Block) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(block.text, source=block.where)
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    assert "sse-batcher serve" in parser["Service"]["ExecStart"]


@pytest.mark.parametrize("block", blocks_of("yaml"))
def test_yaml_block_parses(block: Block) -> None:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:  # PyYAML is not a dependency; the names are checked either way
        pass
    else:
        assert isinstance(yaml.safe_load(block.text), dict | list)
    for name in ("sse-batcher", "/healthz", "SSE_DATA_DIR"):
        assert name in block.text, f"{block.where}: {name}"


@pytest.mark.parametrize("block", blocks_of("nginx"))
def test_nginx_block_is_balanced_and_proxies_to_a_declared_upstream(block: Block) -> None:
    depth = 0
    for number, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        depth += line.count("{") - line.count("}")
        assert depth >= 0 and line[-1] in ";{}", f"{block.path.name}:{number}: {raw!r}"
    assert depth == 0, f"{block.where}: unbalanced braces"
    upstreams = set(re.findall(r"^\s*upstream (\S+) \{", block.text, re.M))
    targets = set(re.findall(r"proxy_pass http://([^;/\s]+)", block.text))
    assert targets and targets <= upstreams, f"{block.where}: proxy_pass to {targets - upstreams}"
    assert "proxy_buffering off" in block.text, f"{block.where}: SSE needs an unbuffered upstream"


@pytest.mark.parametrize("block", blocks_of("text"))
def test_text_block_is_the_data_flow_sketch(block: Block) -> None:
    missing = [hop for hop in DATA_FLOW if hop not in block.text]
    assert not missing, f"{block.where}: the sketch does not name {missing}"


# -- links and words -----------------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {_slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", outside_code, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {target}: no such heading"


def test_docs_index_and_readme_link_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name
            assert f"](docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_name_no_issue_numbers_and_no_retired_words(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"issue #?\d+", text, re.I), page.name
    if page.name != "glossary.md":  # the glossary names the retired words, to retire them
        retired = re.findall(r"\b(pending|evicted|dead[_ -]lettered)\b", text, re.I)
        assert not retired, f"{page.name}: {retired} (see docs/glossary.md)"


def test_dotted_names_in_the_docs_exist() -> None:
    names = {m for page in PAGES for m in re.findall(r"`(sse_batcher(?:\.\w+)+(?::\w+)?)", page.read_text())}
    assert names
    for name in sorted(names):
        module, _, attribute = name.partition(":")
        if _is_module(module):
            continue
        parent, _, last = module.rpartition(".")
        assert not attribute and _exists(parent, last), f"{name} does not exist"
