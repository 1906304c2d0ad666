"""The agent executor: an LLM tool-calling loop in the task's own git worktree.

One attempt::

    worktree on helix/<job>/<task>  (from the merge of its dependencies' branches, or restored)
    planning task -> ask for a plan (schema, one repair) -> commit -> insert subtasks -> waiting
    other types   -> rounds of model call + tools; after each round a WIP commit and a checkpoint
                     {conversation, commit}; then the type's post-step (tests, diagram rendering),
                     a final commit, and a merge into helix/<job>

A resumed attempt (another worker, after a crash) restores the conversation from the latest checkpoint
and resets the worktree to the checkpoint's commit, so the two always match.

Options are the task's typed ``run: {agent: {...}}`` (``domain.runs.AgentOptions``, strict: an
unknown option is a fault of the plan): ``provider``, ``model``, ``max_rounds``, ``token_budget``,
``max_tokens``, ``temperature``, ``on_limit`` (``succeed``, the default, or ``fail``),
``test_command``, ``check``, ``verify`` (false: the test command is only named to the model, not run
after it; a test cycle's debugging tasks, whose re-test follows as its own task), ``max_subtasks``,
``history_chars``, ``chain``, ``tool_choice``, ``on_conflict`` (``fail``, the default, or ``debug``:
see ``helixcode.agent.conflicts``), ``resolves``, ``network``, ``files``. Planned subtasks inherit
the planner's.

Hitting the round limit or token budget ends the task as a success with ``stop_reason`` saying so:
its work so far is committed and merged, which keeps a job moving with weak models; ``on_limit: fail``
makes it a (retryable) failure instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from helixcode.agent.conflicts import markers_left, on_conflict
from helixcode.agent.executors.base import AlreadyReported, TaskContext
from helixcode.agent.fencing import landing_fence
from helixcode.agent.loop import AgentLoop, LoopLimits, LoopState
from helixcode.agent.mcp_tools import mcp_tools
from helixcode.agent.model_needs import model_needs
from helixcode.agent.planning import ask_for_plan, chain, plan_output, split_uniform
from helixcode.agent.prompts import PROFILES, system_prompt, task_prompt
from helixcode.agent.sandbox import Sandbox
from helixcode.agent.services import AgentServices, services_for
from helixcode.agent.task_inputs import task_inputs
from helixcode.agent.tools import ToolProvider, Toolset, WorkspaceTools, command_result
from helixcode.agent.workspace import MergeConflict, TaskWorkspace, Workspace, job_branch
from helixcode.domain.enums import TaskType
from helixcode.domain.models import Task
from helixcode.domain.runs import AgentOptions, AgentRun
from helixcode.errors import PlanError, StoreError, TaskFailed
from helixcode.llm.errors import LLMError
from helixcode.llm.types import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

__all__ = ["AgentExecutor", "AgentOptions"]

TEST_TIMEOUT = 600.0
#: Provider kinds that can force one named tool but not "any tool" (see ``adapt_for_llama_cpp_python``).
NAMED_KINDS = ("local", "llamacpp")


class AgentExecutor:
    async def execute(self, ctx: TaskContext) -> dict[str, Any]:
        if not ctx.workdir:
            raise TaskFailed("agent tasks need a repository: the job has no workdir", retryable=False)
        services = await services_for(ctx.database_url)
        opts = ctx.run_as(AgentRun).agent
        workspace = Workspace(ctx.workdir, ctx.task.job_id, data_dir=services.settings.workers.data_dir)
        saved = ctx.checkpoint if isinstance(ctx.checkpoint, dict) else {}
        sources, summaries = await self._inputs(services, ctx.task)
        try:
            tws = await workspace.prepare(ctx.task.key, sources, resume_commit=saved.get("commit"))
        except MergeConflict as exc:
            await on_conflict(
                ctx, services.store, workspace, exc, debug=opts.debug_conflicts, sources=sources
            )
        chat = self._chat(services, opts, ctx.task)
        if ctx.task.type is TaskType.PLANNING:
            await self._plan(ctx, services, opts, workspace, tws, chat)
            raise AssertionError("unreachable")  # _plan reports the outcome itself
        return await Attempt(ctx, services, opts, workspace, tws, chat, summaries).run(saved)

    @staticmethod
    def _chat(services: AgentServices, opts: AgentOptions, task: Task) -> Any:
        """Every model call of the task goes to the manager with the task's needs (see ``model_needs``);
        ``opts.provider``/``opts.model`` (``--provider``/``--model``) override the choice."""
        needs = model_needs(task.type, task.requires, model=opts.model)

        async def chat(request: ChatRequest) -> ChatResponse:
            return await services.llm.chat(request, requirements=needs, provider=opts.provider)

        return chat

    @staticmethod
    async def _inputs(services: AgentServices, task: Task) -> tuple[list[str], dict[str, str]]:
        return await task_inputs(services.store, task)

    async def _plan(
        self,
        ctx: TaskContext,
        services: AgentServices,
        opts: AgentOptions,
        workspace: Workspace,
        tws: TaskWorkspace,
        chat: Any,
    ) -> None:
        files = (await WorkspaceTools(tws.path).list_files({})).content
        await ctx.report_progress(0.1, "asking for a plan")
        goal = f"{ctx.task.title}\n{ctx.task.description}".strip()
        try:
            result = await ask_for_plan(
                chat,
                goal,
                files[:2000],
                max_subtasks=opts.max_subtasks,
                max_tokens=max(400, 100 * opts.max_subtasks),
                temperature=opts.temperature,
                capabilities=await _offered(services, ctx),
                allow_network=services.settings.agent.planner_network,
            )
        except PlanError as exc:
            raise TaskFailed(str(exc), output={"faults": exc.faults}) from exc
        subtasks = split_uniform(result.subtasks, tws.path)
        if opts.chain:
            subtasks = chain(subtasks)
        result.subtasks = subtasks
        commit = await workspace.commit(
            tws,
            f"{ctx.task.key}: plan\n\n"
            + "\n".join(f"- {s.id} ({s.type.value}): {s.title}" for s in subtasks),
            allow_empty=True,
        )
        await workspace.integrate(ctx.task.key, landing_fence(ctx, services.store, "plan"))
        await workspace.release(tws)
        output = plan_output(
            result, {"commit": commit, "branch": tws.branch, "job_branch": job_branch(ctx.task.job_id)}
        )
        try:
            await services.store.expand_task(ctx.task.id, ctx.token, subtasks, output)
        except PlanError as exc:
            raise TaskFailed(str(exc), output={"faults": exc.faults}) from exc
        raise AlreadyReported(f"planned {len(subtasks)} subtasks")


class Attempt:
    """One attempt of a tool-loop task; its pieces are small methods so each step reads on its own."""

    def __init__(
        self,
        ctx: TaskContext,
        services: AgentServices,
        opts: AgentOptions,
        workspace: Workspace,
        tws: TaskWorkspace,
        chat: Any,
        summaries: dict[str, str],
    ) -> None:
        self.ctx, self.services, self.opts = ctx, services, opts
        self.workspace, self.tws, self.chat, self.summaries = workspace, tws, chat, summaries
        self.profile = PROFILES[ctx.task.type]
        self.max_rounds = opts.max_rounds or self.profile.max_rounds

    async def run(self, saved: Mapping[str, Any]) -> dict[str, Any]:
        async with mcp_tools(self.services.settings) as from_mcp:
            return await self._run(saved, [*self.services.extra_tools, *from_mcp])

    async def _run(self, saved: Mapping[str, Any], providers: Sequence[ToolProvider]) -> dict[str, Any]:
        task = self.ctx.task
        own = self._workspace_tools()
        tools = Toolset(own, self.profile.tools, providers)
        try:
            return await self._converse(saved, task, tools)
        finally:
            await self._record_refusals(own)

    async def _record_refusals(self, tools: WorkspaceTools) -> None:
        """One ``sandbox_refused`` event with what the tools refused this attempt (best effort: the
        model already read each refusal; the event is for the operator and the metrics)."""
        if not tools.refusals:
            return
        ctx = self.ctx
        try:
            await self.services.store.record_refusal(
                ctx.task.id, ctx.token, "sandbox_refused", ctx.attempt, ctx.task.lease_owner,
                counts=dict(tools.refusals),
            )  # fmt: skip
        except StoreError as exc:
            log.warning("could not record refusals: %s", exc, extra={"action": "agent.refusals_lost"})

    async def _converse(self, saved: Mapping[str, Any], task: Task, tools: Toolset) -> dict[str, Any]:
        history, named_only = await self._model_fit(tools)
        limits = LoopLimits(
            max_rounds=self.max_rounds,
            token_budget=self.opts.token_budget,
            max_tokens=self.opts.max_tokens,
            temperature=self.opts.temperature,
            history_chars=history,
            nudge_tool="write_file" if "write_file" in tools.names else tools.names[0],
            named_only=named_only,
        )
        if saved.get("loop"):
            state = LoopState.from_json(saved["loop"])
        else:
            state = LoopState([_system(task.type), _user(task, self.summaries, self._test_command())])
        resumed_at = state.rounds if saved.get("loop") else None
        state = await AgentLoop(self.chat, tools, limits, self._after_round).run(state)
        if state.stop_reason != "finished" and self.opts.on_limit == "fail":
            raise TaskFailed(f"stopped at the {state.stop_reason.replace('_', ' ')} without finishing")  # type: ignore[union-attr]
        await self._check_resolved()
        extra = await self._post_step(state)
        summary = state.summary or f"stopped at the {str(state.stop_reason).replace('_', ' ')}"
        commit = await self.workspace.commit(
            self.tws, f"{task.key}: {task.title}\n\n{summary}", allow_empty=True
        )
        try:
            merged = await self.workspace.integrate(
                task.key, landing_fence(self.ctx, self.services.store, "landing")
            )
        except MergeConflict as exc:
            done = {"summary": summary, "commit": commit, "rounds": state.rounds, "tokens": state.tokens}
            await on_conflict(
                self.ctx,
                self.services.store,
                self.workspace,
                exc,
                debug=self.opts.debug_conflicts,
                tws=self.tws,
                output=done,
            )
        files = await asyncio.to_thread(self.workspace.changed_files_sync, self.tws)
        await self.workspace.release(self.tws)
        return {
            "summary": summary,
            "stop_reason": state.stop_reason,
            "rounds": state.rounds,
            "tokens": state.tokens,
            "tool_calls": state.tool_calls,
            "resumed_at_round": resumed_at,
            "commit": commit,
            "branch": self.tws.branch,
            "job_branch": job_branch(task.job_id),
            "job_tip": merged,
            "files": files,
            **extra,
        }

    def _workspace_tools(self) -> WorkspaceTools:
        """The built-in tools over the worktree; commands run in the worker's sandbox, with the
        repository's git metadata read-only and the network as the task allows."""
        return WorkspaceTools(
            self.tws.path,
            self.services.command_policy,
            sandbox=self.services.sandbox,
            git_dir=self.workspace.common_dir,
            network=self.opts.network,
        )

    async def _model_fit(self, tools: Toolset) -> tuple[int, bool]:
        """How many characters of past turns fit the likely model's window next to the tools and the
        reply, and whether it must be driven with named tools (llama-cpp-python based providers)."""
        specs = tools.specs()
        needs = model_needs(self.ctx.task.type, self.ctx.task.requires, model=self.opts.model)
        probe = ChatRequest([], tools=specs)
        try:
            found = await self.services.llm.candidates(probe, needs, self.opts.provider)
        except LLMError:
            found = []
        if not found:
            return self.opts.history_chars, self.opts.tool_choice == "named"
        kind = getattr(self.services.llm.providers.get(found[0].provider), "kind", "")
        named = self.opts.tool_choice == "named" or (self.opts.tool_choice == "auto" and kind in NAMED_KINDS)
        window = found[0].capabilities.context_length
        if not window:
            return self.opts.history_chars, named
        spec_tokens = len(json.dumps([(t.name, t.description, t.parameters) for t in specs])) // 3
        spare_tokens = window - self.opts.max_tokens - spec_tokens - 400  # 400: the system prompt and task
        return max(600, min(self.opts.history_chars, spare_tokens * 3)), named

    async def _check_resolved(self) -> None:
        """A conflict-resolution task may not finish while a conflict marker remains."""
        if self.opts.resolves and (left := markers_left(self.tws.path, self.opts.resolves)):
            await self.workspace.commit(self.tws, f"wip({self.ctx.task.key}): markers remain")
            raise TaskFailed(f"conflict markers remain in {', '.join(left)}")

    async def _after_round(self, state: LoopState) -> None:
        commit = await self.workspace.commit(self.tws, f"wip({self.ctx.task.key}): round {state.rounds}")
        head = commit or await asyncio.to_thread(self.workspace.head_sync, self.tws)
        await self.ctx.save_checkpoint(
            "agent", {"loop": state.to_json(), "commit": head, "branch": self.tws.branch}
        )
        note = state.note or f"round {state.rounds}/{self.max_rounds}, {state.tool_calls} tool calls"
        await self.ctx.report_progress(state.progress(self.max_rounds), note)

    def _test_command(self) -> str | None:
        if self.opts.check:
            return self.opts.check
        if self.ctx.task.type in (TaskType.TESTING, TaskType.DEBUGGING):
            return self.opts.test_command or detect_test_command(self.tws.path)
        return None

    async def _post_step(self, state: LoopState) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ctx.task.type is TaskType.DIAGRAM:
            sources = await asyncio.to_thread(
                write_diagram, self.tws.path, self.ctx.task.key, state.files_written
            )
            out["diagrams"] = await render_diagrams(self.services.sandbox, self.tws.path, sources)
        command = self._test_command() if self.opts.verify else None
        if command:
            await self.ctx.report_progress(0.99, f"running {command}")
            result = command_result(
                await self.services.sandbox.run(
                    command,
                    worktree=self.tws.path,
                    git_dir=self.workspace.common_dir,
                    timeout=TEST_TIMEOUT,
                    network=self.opts.network,
                )
            )
            tests = {
                "command": command,
                **parse_test_counts(result.content),
                "exit_code": result.data["exit_code"],
                "passed_ok": result.ok,
                "output": result.content[-2000:],
            }
            out["tests"] = tests
            if not result.ok:
                await self.workspace.commit(self.tws, f"wip({self.ctx.task.key}): tests failing")
                raise TaskFailed(
                    f"tests failed: {command} ({tests.get('failed', '?')} failed, "
                    f"{tests.get('passed', '?')} passed)",
                    retryable=False,
                    output=out,
                )
        return out


async def _offered(services: AgentServices, ctx: TaskContext) -> list[str]:
    """What the live workers can do (this one included): all a planned subtask may require."""
    found = {cap for w in await services.store.list_workers(include_stopped=False) for cap in w.capabilities}
    return sorted(found | set(ctx.task.requires))


def _system(task_type: TaskType) -> Any:
    from helixcode.llm.types import Message

    return Message.system(system_prompt(task_type))


def _user(task: Task, summaries: Mapping[str, str], test_command: str | None) -> Any:
    from helixcode.llm.types import Message

    extra = [f"The test command is: {test_command}"] if test_command else []
    return Message.user(task_prompt(task.title, task.description, summaries, extra))


def detect_test_command(root: Path) -> str | None:
    """A test command for common layouts: pytest when it is importable, else unittest discovery."""
    if (root / "Makefile").is_file() and re.search(
        r"^test:", (root / "Makefile").read_text(errors="replace"), re.M
    ):
        return "make test"
    has_tests = any(root.glob("test*.py")) or any(root.glob("tests/test*.py"))
    if not has_tests:
        return None
    import importlib.util

    runner = "pytest -q" if importlib.util.find_spec("pytest") else "unittest discover -q"
    return f"{sys.executable} -m {runner}"


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)")


def parse_test_counts(output: str) -> dict[str, int]:
    """Pass/fail counts from pytest's or unittest's summary line."""
    counts: dict[str, int] = {}
    for number, word in _COUNT.findall(output):
        key = "errors" if word.startswith("error") else word
        counts[key] = int(number)
    if ran := re.search(r"Ran (\d+) tests?", output):
        total = int(ran.group(1))
        failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", output))
        counts.update(total=total, failed=failed, passed=total - failed)
    return counts


def write_diagram(root: Path, key: str, written: list[str]) -> list[Path]:
    """Make sure the task leaves Mermaid source (a flowchart of the repository when the model wrote
    none); the sources, to render."""
    sources = [root / p for p in written if p.endswith((".mmd", ".mermaid")) and (root / p).is_file()]
    if not sources:
        target = root / "docs" / "diagrams" / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', key)}.mmd"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(repository_mermaid(root), encoding="utf-8")
        sources = [target]
    return sources


async def render_diagrams(sandbox: Sandbox, root: Path, sources: Sequence[Path]) -> list[str]:
    """The sources, and an SVG of each flowchart when Graphviz is installed. Graphviz reads input a
    model wrote, so it runs in the sandbox like any command of the task."""
    made = [str(p.relative_to(root)) for p in sources]
    if shutil.which("dot") is None:
        return made
    for src in sources:
        graph = mermaid_to_dot(src.read_text(encoding="utf-8", errors="replace"))
        if graph is None:
            continue
        dot_file, svg = src.with_suffix(".dot"), src.with_suffix(".svg")
        dot_file.write_text(graph, encoding="utf-8")
        try:
            result = await sandbox.run(
                ["dot", "-Tsvg", "-o", str(svg), str(dot_file)], worktree=root, timeout=60, network=False
            )
        finally:
            dot_file.unlink(missing_ok=True)
        if result.ok and svg.is_file():
            made.append(str(svg.relative_to(root)))
    return made


def repository_mermaid(root: Path) -> str:
    """A flowchart of the repository's folders and files (what a diagram task falls back to)."""
    lines = ["flowchart TD", '    root["."]']
    ids: dict[Path, str] = {root: "root"}
    for path in sorted(p for p in root.rglob("*") if ".git" not in p.relative_to(root).parts)[:60]:
        node = f"n{len(ids)}"
        ids[path] = node
        lines.append(f'    {node}["{path.name}"]')
        lines.append(f"    {ids.get(path.parent, 'root')} --> {node}")
    return "\n".join(lines) + "\n"


_EDGE = re.compile(
    r"^\s*([A-Za-z0-9_]+)(?:\[\"?([^\]\"]*)\"?\])?\s*-+>\s*([A-Za-z0-9_]+)(?:\[\"?([^\]\"]*)\"?\])?"
)
_NODE = re.compile(r"^\s*([A-Za-z0-9_]+)\[\"?([^\]\"]*)\"?\]\s*$")


def mermaid_to_dot(source: str) -> str | None:
    """DOT for a Mermaid flowchart's nodes and ``-->`` edges; None when there is nothing to draw."""
    labels: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in source.splitlines():
        if m := _EDGE.match(line):
            a, la, b, lb = m.groups()
            labels.setdefault(a, la or a)
            labels.setdefault(b, lb or b)
            edges.append((a, b))
        elif m := _NODE.match(line):
            labels[m.group(1)] = m.group(2)
    if not labels:
        return None
    body = [f'  {n} [label="{label.replace(chr(34), "")}"];' for n, label in labels.items()]
    body += [f"  {a} -> {b};" for a, b in edges]
    return "digraph G {\n" + "\n".join(body) + "\n}\n"
