"""Lint the SAM template and the state machine definition: ``python -m workflow.tools.lint_template``.

Prints one line per check and exits 1 on any finding:

1. cfn-lint on template.yaml (cfn-lint validates the SAM resources against SAM's own schemas).
2. The substitutions: every ``${Name}`` in the ASL has a ``DefinitionSubstitutions`` entry and every
   entry is used.
3. The ASL graph: StartAt and every Next/Default/Catch target name a state of the same scope, every
   state is reachable and every non-terminal state has exactly one of Next or End.
4. cfn-lint on a generated plain CloudFormation template whose ``AWS::StepFunctions::StateMachine``
   inlines the ASL: cfn-lint checks the ASL schema only in such a ``Definition``, never behind a SAM
   ``DefinitionUri``. The template is written to a temporary folder, never into the repository.
5. The npm ``asl-validator`` (``npm ci`` installs it from package-lock.json when missing).
6. ``sam validate --lint`` when the SAM CLI is found (``$SAM_CLI``, ``.venv-sam/bin/sam`` or PATH);
   it lives in its own virtualenv because aws-sam-cli pins another boto3 than requirements.lock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
SUBSTITUTION = re.compile(r"\$\{([^}\s]+)\}")
REGION, ACCOUNT = "us-east-1", "123456789012"
_ARN_FORMATS = {
    "AWS::Serverless::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{name}",
}
# Types whose Ref is their ARN; for every other resource Ref is its name.
_REF_IS_ARN = {"AWS::SNS::Topic", "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}


@dataclass
class Check:
    """The outcome of one check: findings (empty = passed), or why it was skipped."""

    name: str
    findings: list[str] = field(default_factory=list)
    skipped: str = ""

    def report(self) -> str:
        """The check's line, followed by one indented line per finding."""
        if self.skipped:
            return f"SKIP  {self.name}: {self.skipped}"
        if not self.findings:
            return f"ok    {self.name}"
        head = f"FAIL  {self.name}: {len(self.findings)} finding(s)"
        return "\n".join([head, *(f"      {line}" for line in self.findings)])


def load_template(path: Path) -> dict[str, Any]:
    """The template as data, short-form tags (``!GetAtt``) expanded to ``Fn::`` keys, as cfn-lint reads it."""
    template, matches = decode(str(path))
    if matches or template is None:
        raise ValueError(f"{path} cannot be parsed: " + "; ".join(m.message for m in matches))
    return dict(template)


def placeholder(value: Any, template: dict[str, Any]) -> str:
    """A plausible resolved value for one ``DefinitionSubstitutions`` entry (an ARN, a name)."""
    if isinstance(value, str | int | float):
        return str(value)
    if not isinstance(value, dict) or len(value) != 1:
        return "placeholder"
    ((function, argument),) = value.items()
    if function == "Fn::GetAtt":
        logical, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
    elif function == "Ref":
        logical, attribute = str(argument), "Ref"
    else:
        return "placeholder"
    parameter = template.get("Parameters", {}).get(logical)
    if parameter is not None:
        return str(parameter.get("Default", logical))
    kind = template.get("Resources", {}).get(logical, {}).get("Type", "")
    arn_format = _ARN_FORMATS.get(kind)
    if arn_format and (attribute == "Arn" or (attribute == "Ref" and kind in _REF_IS_ARN)):
        return arn_format.format(region=REGION, account=ACCOUNT, name=logical.lower())
    return logical.lower()


@dataclass(frozen=True)
class StateMachineSource:
    """A SAM state machine: its ASL file, substitutions and the template they resolve in."""

    logical_id: str
    definition_path: Path
    substitutions: dict[str, Any]
    template: dict[str, Any]
    machine_type: str = "STANDARD"

    def text(self) -> str:
        """The ASL exactly as written, ``${...}`` placeholders included."""
        return self.definition_path.read_text(encoding="utf-8")

    def definition(self) -> dict[str, Any]:
        """The ASL as JSON data, placeholders kept (as CloudFormation receives it)."""
        data: dict[str, Any] = json.loads(self.text())
        return data

    def placeholders(self) -> dict[str, str]:
        """A plausible value for every substitution (what CloudFormation would put there)."""
        return {name: placeholder(value, self.template) for name, value in self.substitutions.items()}

    def substituted(self) -> dict[str, Any]:
        """The ASL with every known ``${Name}`` replaced by its placeholder value."""
        values = self.placeholders()

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            return json.dumps(values[name])[1:-1] if name in values else match.group(0)

        data: dict[str, Any] = json.loads(SUBSTITUTION.sub(replace, self.text()))
        return data


MAIN_STATE_MACHINE = "AutolabelStateMachine"


def state_machine_sources(template_path: Path) -> list[StateMachineSource]:
    """Every ``AWS::Serverless::StateMachine`` with a ``DefinitionUri`` (autolabel, drivelogs)."""
    template = load_template(template_path)
    machines = [
        (name, resource.get("Properties", {}))
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::StateMachine"
        and "DefinitionUri" in resource.get("Properties", {})
    ]
    if not machines:
        raise ValueError("found no state machine with a DefinitionUri")
    return [_source(template_path, template, name, props) for name, props in machines]


def state_machine_source(template_path: Path, logical_id: str = MAIN_STATE_MACHINE) -> StateMachineSource:
    """One state machine of the template, by logical id (default: the autolabel workflow)."""
    found = [s for s in state_machine_sources(template_path) if s.logical_id == logical_id]
    if not found:
        raise ValueError(f"no state machine {logical_id!r} with a DefinitionUri in {template_path.name}")
    return found[0]


def _source(
    template_path: Path, template: dict[str, Any], name: str, props: dict[str, Any]
) -> StateMachineSource:
    return StateMachineSource(
        logical_id=name,
        definition_path=template_path.parent / str(props["DefinitionUri"]),
        substitutions=dict(props.get("DefinitionSubstitutions", {})),
        template=template,
        machine_type=str(props.get("Type", "STANDARD")),
    )


def child_definitions(state: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The nested state machines of a Map (ItemProcessor/Iterator) or Parallel (Branches) state."""
    for key in ("ItemProcessor", "Iterator"):
        if isinstance(state.get(key), dict):
            yield key, state[key]
    for index, branch in enumerate(state.get("Branches", [])):
        yield f"Branches[{index}]", branch


def iter_states(definition: dict[str, Any], scope: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every state, nested ones included, as (scope path, state name, state)."""
    for name, state in definition.get("States", {}).items():
        yield scope, name, state
        for key, child in child_definitions(state):
            yield from iter_states(child, f"{scope}{name}/{key}/")


def transitions(state: dict[str, Any]) -> list[str]:
    """Every state name this state can move to: Next, Default, Choices' Next and Catch's Next."""
    targets = [state["Next"]] if "Next" in state else []
    if "Default" in state:
        targets.append(state["Default"])
    targets += [rule["Next"] for rule in state.get("Choices", []) if "Next" in rule]
    targets += [catcher["Next"] for catcher in state.get("Catch", []) if "Next" in catcher]
    return targets


def graph_findings(definition: dict[str, Any], scope: str = "") -> list[str]:
    """Broken transitions, unreachable states and states with neither (or both) Next and End."""
    states: dict[str, Any] = definition.get("States") or {}
    start = definition.get("StartAt")
    findings = [] if start in states else [f"{scope}StartAt {start!r} names no state"]
    for name, state in states.items():
        findings += [
            f"{scope}{name}: transition to {target!r}, which names no state in its scope"
            for target in transitions(state)
            if target not in states
        ]
        if state.get("Type") not in ("Choice", "Succeed", "Fail") and ("Next" in state) == bool(
            state.get("End")
        ):
            findings.append(f"{scope}{name}: needs exactly one of Next or End")
        for key, child in child_definitions(state):
            findings += graph_findings(child, f"{scope}{name}/{key}/")
    reachable = _reachable(states, start)
    findings += [f"{scope}{name}: not reachable from StartAt" for name in states if name not in reachable]
    return findings


def _reachable(states: dict[str, Any], start: Any) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        pending += transitions(states[name])
    return seen


def substitution_findings(asl_text: str, substitutions: dict[str, Any]) -> list[str]:
    """Placeholders without a DefinitionSubstitutions entry, and entries no placeholder uses."""
    used = set(SUBSTITUTION.findall(asl_text))
    missing = [
        f"${{{name}}} has no DefinitionSubstitutions entry" for name in sorted(used - set(substitutions))
    ]
    unused = [
        f"DefinitionSubstitutions entry {name!r} is not used" for name in sorted(set(substitutions) - used)
    ]
    return missing + unused


def inlined_template(source: StateMachineSource) -> dict[str, Any]:
    """A plain CloudFormation template whose StepFunctions state machine inlines the ASL."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Generated by workflow.tools.lint_template so that cfn-lint validates the ASL.",
        "Resources": {
            source.logical_id: {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "StateMachineType": source.machine_type,
                    "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/autolabel-lint",
                    "Definition": source.definition(),
                    "DefinitionSubstitutions": source.placeholders(),
                },
            }
        },
    }


def cfn_lint_findings(template_path: Path) -> list[str]:
    """cfn-lint's matches on one template file, one line each (rule, message, file:line)."""
    matches = lint_file(template_path, config=ManualArgs(regions=[REGION]))
    return [f"{m.rule.id} {m.message} ({Path(m.filename).name}:{m.linenumber})" for m in matches]


def lint_inlined(source: StateMachineSource, workdir: Path) -> list[str]:
    """Write the inlined template into ``workdir`` and return cfn-lint's findings on it."""
    path = workdir / "inlined-state-machine.json"
    path.write_text(json.dumps(inlined_template(source), indent=2), encoding="utf-8")
    return cfn_lint_findings(path)


def _run(command: Sequence[str], cwd: Path, timeout: int) -> tuple[int, list[str]]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, [f"{Path(command[0]).name} ran past {timeout} s"]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, lines


def check_asl_validator(source: StateMachineSource, workdir: Path, root: Path, install: bool) -> Check:
    """The npm asl-validator on the ASL with placeholder ARNs (``npm ci`` installs it when missing)."""
    check = Check(f"asl-validator (npm) on {source.definition_path.name} with placeholder ARNs")
    binary = root / "node_modules" / ".bin" / "asl-validator"
    if shutil.which("node") is None:
        check.skipped = "node not found (install Node.js >= 18 to run it)"
        return check
    if not binary.exists():
        if not install or shutil.which("npm") is None:
            check.skipped = f"{binary.relative_to(root)} is missing (run: npm ci)"
            return check
        code, output = _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], root, 600)
        if code != 0:
            check.findings = ["npm ci failed:", *output[-20:]]
            return check
    path = workdir / source.definition_path.name
    path.write_text(json.dumps(source.substituted(), indent=2), encoding="utf-8")
    code, output = _run([str(binary), "--json-path", str(path)], root, 120)
    if code != 0:
        check.findings = output or [f"asl-validator exited with {code}"]
    return check


def find_sam(root: Path) -> str | None:
    """The SAM CLI: ``$SAM_CLI``, the project's ``.venv-sam``, or ``sam`` on PATH."""
    for candidate in (
        os.environ.get("SAM_CLI"),
        str(root / ".venv-sam" / "bin" / "sam"),
        shutil.which("sam"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def check_sam_validate(template_path: Path, root: Path) -> Check:
    """``sam validate --lint`` on the template (offline), skipped when no SAM CLI is installed."""
    check = Check("sam validate --lint")
    sam = find_sam(root)
    if sam is None:
        check.skipped = "SAM CLI not found (make sam-cli installs it into .venv-sam)"
        return check
    command = [sam, "validate", "--lint", "--template-file", str(template_path), "--region", REGION]
    code, output = _run(command, root, 300)
    if code != 0:
        check.findings = output or [f"sam exited with {code}"]
    return check


def run_checks(template_path: Path, root: Path, install: bool = True) -> Iterator[Check]:
    """Every check, in order, each yielded as soon as it has run."""
    yield Check(f"cfn-lint {template_path.name}", cfn_lint_findings(template_path))
    try:
        sources = state_machine_sources(template_path)
        definitions = [source.definition() for source in sources]
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        yield Check("state machine definition", [f"{type(error).__name__}: {error}"])
        return
    for source, definition in zip(sources, definitions, strict=True):
        yield from _state_machine_checks(source, definition, root, install)
    yield check_sam_validate(template_path, root)


def _state_machine_checks(
    source: StateMachineSource, definition: dict[str, Any], root: Path, install: bool
) -> Iterator[Check]:
    name = source.definition_path.name
    yield Check(
        f"{name}: DefinitionSubstitutions", substitution_findings(source.text(), source.substitutions)
    )
    yield Check(f"{name}: state graph", graph_findings(definition))
    with tempfile.TemporaryDirectory(prefix="autolabel-lint-") as tmp:
        yield Check(
            f"cfn-lint {name} inlined in AWS::StepFunctions::StateMachine", lint_inlined(source, Path(tmp))
        )
        yield check_asl_validator(source, Path(tmp), root, install)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every check, print one line each, and return 1 when any check has findings."""
    parser = argparse.ArgumentParser(
        prog="python -m workflow.tools.lint_template", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template (default: %(default)s)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="do not run npm ci when asl-validator is missing"
    )
    args = parser.parse_args(argv)
    template_path = args.template.resolve()
    failed = 0
    for check in run_checks(template_path, template_path.parent, install=not args.no_install):
        print(check.report(), flush=True)
        failed += bool(check.findings)
    print(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
