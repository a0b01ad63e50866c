"""Check terraform/ against the real provider schemas, offline (what `terraform validate` would catch).

For each provider set in ``provider_schema.SETS`` (the lowest versions versions.tf allows and the
newest google 7.x), every block in the configuration is checked:

* every resource, data source and ephemeral resource type exists;
* every argument and nested block exists at its level, including ``dynamic`` block content;
* required arguments and blocks are set, computed-only attributes are not;
* string literals given to an argument with documented "Possible values" are among them;
* references (``google_x.y[0].a.b``, ``data.…``, ``ephemeral.…``) name a declared block and
  attributes its schema has; ``var.`` and ``local.`` references name declared ones.

Usage: python scripts/check_provider_schema.py [TERRAFORM_DIR]   (exit 1 on any problem)
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provider_schema

ROOT = Path(__file__).resolve().parents[1]
META_ARGS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle", "connection", "provisioner"})
BUILTIN_TYPES = frozenset({"terraform_data"})
# Providers no registry package describes offline (fivetran/fivetran has no CDK build): their blocks
# are reported as not verifiable, never passed silently.
UNVERIFIABLE_PROVIDERS = frozenset({"fivetran"})
_REF_RE = re.compile(
    r"(?<![\w.\-/])(?:(data|ephemeral)\.)?((?:google|random|archive|time|terraform)_[a-z0-9_]+)\.([A-Za-z_][\w-]*)"
    r"((?:\[[^\]]*\]|\.\*|\.[A-Za-z_][\w-]*)*)"
)
_VAR_RE = re.compile(r"(?<![\w.])(var|local)\.([A-Za-z_][\w-]*)")
_STEP_RE = re.compile(r"\[[^\]]*\]|\.\*|\.[A-Za-z_][\w-]*")


@dataclass
class Config:
    """The top-level blocks of a module, with the file each came from."""

    blocks: dict[str, dict[str, tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # kind -> "type.name" -> (file, body)
    providers: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)
    locals: set[str] = field(default_factory=set)
    strings: list[tuple[str, str]] = field(default_factory=list)  # (file, text) of every string value


def load_config(tf_dir: Path) -> Config:
    options = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True, preserve_heredocs=False)
    cfg = Config(blocks={"resource": {}, "data": {}, "ephemeral": {}})
    for path in sorted(tf_dir.glob("*.tf")):
        with path.open(encoding="utf-8") as fh:
            doc = hcl2.load(fh, serialization_options=options)
        for kind in ("resource", "data", "ephemeral"):
            for block in doc.get(kind, []):
                for rtype, by_name in block.items():
                    for name, body in by_name.items():
                        if name != "__is_block__":
                            cfg.blocks[kind][f"{rtype}.{name}"] = (path.name, body)
        for block in doc.get("provider", []):
            cfg.providers.extend((path.name, name, body) for name, body in block.items() if name != "__is_block__")
        cfg.variables.update(n for block in doc.get("variable", []) for n in block if n != "__is_block__")
        cfg.locals.update(n for block in doc.get("locals", []) for n in block if n != "__is_block__")
        cfg.strings.extend((path.name, s) for s in _strings(doc))
    return cfg


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def check(cfg: Config, schemas: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Problems and notes for one provider set (``schemas`` maps provider name to reduced schema)."""
    problems: list[str] = []
    notes: list[str] = []
    for kind, blocks in cfg.blocks.items():
        for address, (file, body) in sorted(blocks.items()):
            rtype = address.split(".")[0]
            where = f"{file}: {'' if kind == 'resource' else kind + '.'}{address}"
            schema = _type_schema(schemas, kind, rtype)
            if schema is None:
                if rtype in BUILTIN_TYPES:
                    continue
                provider = schemas.get(rtype.split("_")[0])
                if provider is None and rtype.split("_")[0] in UNVERIFIABLE_PROVIDERS:
                    notes.append(f"{where}: no offline schema for the {rtype.split('_')[0]} provider; not verifiable here")
                    continue
                if kind == "ephemeral" and provider is not None and not provider["has_ephemeral"]:
                    notes.append(f"{where}: {provider['package']} predates ephemeral resources; not verifiable here")
                    continue
                known = sorted(provider[kind]) if provider else []
                problems.append(f"{where}: unknown {kind} type {rtype!r}{_hint(rtype, known)}")
                continue
            _check_block(body, schema, where, problems, top=True)
    for file, name, body in cfg.providers:
        provider = schemas.get(name)
        if provider is None:
            problems.append(f"{file}: provider {name!r} has no schema in this set")
        else:
            _check_block(body, provider["provider_config"], f"{file}: provider {name}", problems, top=True)
    for file, text in cfg.strings:
        for expr in _interpolations(text):
            problems.extend(f"{file}: {p}" for p in _check_references(expr, cfg, schemas, notes))
    return problems, sorted(set(notes))


def _type_schema(schemas: dict[str, dict[str, Any]], kind: str, rtype: str) -> dict[str, Any] | None:
    provider = schemas.get(rtype.split("_", maxsplit=1)[0])
    return provider[kind].get(rtype) if provider else None


def _check_block(body: dict[str, Any], schema: dict[str, Any], where: str, problems: list[str], *, top: bool = False) -> None:
    present = set()
    for key, value in body.items():
        if key == "__is_block__" or (top and key in META_ARGS):
            continue
        if key == "dynamic":
            for dyn in value:
                for label, spec in dyn.items():
                    if label == "__is_block__":
                        continue
                    present.add(label)
                    nested = schema["blocks"].get(label)
                    if nested is None:
                        problems.append(f"{where}: unknown block {label!r} in dynamic{_hint(label, schema['blocks'])}")
                        continue
                    for content in spec.get("content", []):
                        _check_block(content, nested["block"], f"{where}.{label}", problems)
            continue
        present.add(key)
        if key in schema["args"]:
            _check_enum(key, value, schema["args"][key].get("enum"), where, problems)
        elif key in schema["blocks"]:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _check_block(item, schema["blocks"][key]["block"], f"{where}.{key}", problems)
        elif key in schema["attrs"]:
            problems.append(f"{where}: {key!r} is computed-only and cannot be set")
        else:
            problems.append(f"{where}: unknown argument or block {key!r}{_hint(key, [*schema['args'], *schema['blocks']])}")
    for name, spec in (*schema["args"].items(), *schema["blocks"].items()):
        if spec["required"] and name not in present:
            problems.append(f"{where}: required {name!r} is not set")


def _check_enum(key: str, value: Any, enum: list[str] | None, where: str, problems: list[str]) -> None:
    if enum and isinstance(value, str) and "${" not in value and value not in enum:
        problems.append(f"{where}: {key} = {value!r} is not one of {enum}")


def _interpolations(text: str) -> list[str]:
    """The expressions inside ``${ … }``, braces balanced (nested templates stay inside)."""
    found, start = [], text.find("${")
    while start != -1:
        depth, i = 0, start + 1
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        found.append(text[start + 2 : i])
        start = text.find("${", i)
    return found


def _check_references(expr: str, cfg: Config, schemas: dict[str, dict[str, Any]], notes: list[str]) -> list[str]:
    problems = []
    for kind, name in _VAR_RE.findall(expr):
        declared = cfg.variables if kind == "var" else cfg.locals
        if name not in declared:
            problems.append(f"reference {kind}.{name}: not declared{_hint(name, declared)}")
    for prefix, rtype, name, path in _REF_RE.findall(expr):
        kind = prefix or "resource"
        shown = f"{prefix + '.' if prefix else ''}{rtype}.{name}"
        if f"{rtype}.{name}" not in cfg.blocks[kind]:
            problems.append(f"reference {shown}: no such {kind} is declared")
            continue
        schema = _type_schema(schemas, kind, rtype)
        if schema is None:  # reported (or noted) where the block is declared
            continue
        node: dict[str, Any] | None = {"attrs": schema["attrs"]}
        for step in _STEP_RE.findall(path):
            if node is None:
                break  # a leaf: map keys and list elements are not in the schema
            if not step.startswith(".") or step == ".*":
                continue  # an index or splat
            attr = step[1:]
            if attr not in node["attrs"]:
                problems.append(f"reference {shown}{path}: no attribute {attr!r}{_hint(attr, node['attrs'])}")
                break
            node = node["attrs"][attr]
    return problems


def _hint(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def main(argv: list[str]) -> int:
    tf_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "terraform"
    cfg = load_config(tf_dir)
    if not any(cfg.blocks.values()):
        print(f"FAILED: no resources found under {tf_dir}", file=sys.stderr)
        return 1
    failed = False
    for set_name, packages in provider_schema.SETS.items():
        schemas = {p.provider: provider_schema.load(p) for p in packages}
        problems, notes = check(cfg, schemas)
        problems = list(dict.fromkeys(problems))  # one line per distinct problem
        print(f"{set_name}: {', '.join(p.label for p in packages)}")
        for note in notes:
            print(f"  note: {note}")
        for problem in problems:
            print(f"  ERROR: {problem}")
        blocks = sum(len(b) for b in cfg.blocks.values())
        print(f"  {blocks} blocks, {len(cfg.strings)} strings checked: {len(problems)} problem(s)")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
