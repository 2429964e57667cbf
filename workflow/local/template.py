"""Reading template.yaml for local mode: the functions, their events, and the names they resolve to.

Local mode builds its resources from the SAM template itself, so the template stays the one source
of truth: a function added there is bound locally, a substitution missing there fails locally too.
Only the few intrinsic functions the template uses are resolved (Ref, GetAtt, Sub, FindInMap).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CfnTag:
    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _CfnTag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return _CfnTag(suffix, value)


_Loader.add_multi_constructor("!", _construct)


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data, with ``!Tag`` values kept as :class:`_CfnTag`."""
    with open(path, encoding="utf-8") as fh:
        return dict(yaml.load(fh, Loader=_Loader))  # noqa: S506 - SafeLoader subclass


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    events: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # the function's own variables
    function_url: dict[str, Any] | None = None  # FunctionUrlConfig


@dataclass
class Resolver:
    """Resolves Ref/GetAtt/Sub/Join/FindInMap against local names and parameter values."""

    refs: dict[str, str]
    attrs: dict[str, str]
    mappings: dict[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, _CfnTag):
            return self._tag(value)
        if isinstance(value, dict):
            if len(value) == 1:
                key, inner = next(iter(value.items()))
                if key == "Ref":
                    return self._tag(_CfnTag("Ref", inner))
                if key.startswith("Fn::"):
                    return self._tag(_CfnTag(key[4:], inner))
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _tag(self, tag: _CfnTag) -> str:
        if tag.tag == "Ref":
            return self.refs[str(tag.value)]
        if tag.tag == "GetAtt":
            name = tag.value if isinstance(tag.value, str) else ".".join(tag.value)
            return self.attrs[name]
        if tag.tag == "Sub":
            # !Sub "text" or !Sub ["text", {name: value}]
            text, names = tag.value, {}
            if isinstance(tag.value, list):
                text, names = tag.value[0], self(tag.value[1])

            def var(match: re.Match[str]) -> str:
                name = match.group(1)
                return str(names[name]) if name in names else self._sub_var(name)

            return re.sub(r"\$\{([^}]+)\}", var, str(text))
        if tag.tag == "Join":
            delimiter, items = tag.value
            resolved = self(items)
            if isinstance(resolved, str):  # a CommaDelimitedList parameter, kept as its text here
                resolved = resolved.split(",") if resolved else []
            return str(delimiter).join(str(v) for v in resolved)
        if tag.tag == "FindInMap":
            mapping, key, name = (self(v) for v in tag.value)
            return str(self.mappings[mapping][key][name])
        raise ValueError(f"intrinsic function !{tag.tag} is not supported in local mode")

    def _sub_var(self, name: str) -> str:
        if name in self.refs:
            return self.refs[name]
        if name in self.attrs:
            return self.attrs[name]
        raise KeyError(f"${{{name}}} cannot be resolved locally")


class Template:
    """The parts of template.yaml local mode needs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent
        self.data = load_template(path)
        self.resources: dict[str, Any] = self.data["Resources"]

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def create_table_request(self, logical_id: str) -> dict[str, Any]:
        """The ``dynamodb.create_table`` arguments of a table of the template, named by its logical id."""
        props = self.of_type("AWS::DynamoDB::Table")[logical_id]["Properties"]
        keys = ("BillingMode", "KeySchema", "AttributeDefinitions")
        return {"TableName": logical_id, **{k: props[k] for k in keys}}

    def parameter_defaults(self) -> dict[str, str]:
        return {k: str(v.get("Default", "")) for k, v in self.data.get("Parameters", {}).items()}

    def functions(self) -> list[FunctionSpec]:
        return [
            FunctionSpec(
                logical_id=name,
                code_uri=res["Properties"]["CodeUri"],
                handler=res["Properties"]["Handler"],
                events=res["Properties"].get("Events", {}),
                environment=dict(res["Properties"].get("Environment", {}).get("Variables", {})),
                function_url=res["Properties"].get("FunctionUrlConfig"),
            )
            for name, res in self.of_type("AWS::Serverless::Function").items()
        ]

    def global_environment(self) -> dict[str, Any]:
        env = self.data.get("Globals", {}).get("Function", {}).get("Environment", {})
        return dict(env.get("Variables", {}))

    def state_machine(self, logical_id: str = "AutolabelStateMachine") -> tuple[Path, dict[str, Any]]:
        """(definition file, DefinitionSubstitutions) of the state machine (default: the autolabel one)."""
        props = self.of_type("AWS::Serverless::StateMachine")[logical_id]["Properties"]
        return self.root / props["DefinitionUri"], dict(props.get("DefinitionSubstitutions", {}))
