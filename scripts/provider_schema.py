"""Terraform provider schemas, offline, from the prebuilt CDK provider packages on PyPI.

`terraform validate` needs the provider binaries, which cannot be downloaded here. The CDK
for Terraform packages (`cdktf-cdktf-provider-*`, and their successors `cdktn-provider-*`)
are generated from those same provider schemas and ship them as a jsii assembly: one JSON
document naming every resource, data source and ephemeral resource, each argument and nested
block (optional or required, with the provider's documentation, "Possible values" included)
and every readable attribute.

Each package is downloaded once with pip (wheel only, no dependencies), the `.jsii` assembly is
read out of it, reduced to what the check needs, and cached gzipped under `.cache/`
(git-ignored). Later runs read only the cache, so the check runs offline after the first one.

A reduced block is ``{"args": {name: {"required": bool, "enum": [..] | None}},
"blocks": {name: {"required": bool, "block": <block>}}, "attrs": {name: <node>}}``, where
``attrs`` is everything readable (arguments, blocks and computed attributes) and a node is
``None`` for a leaf or ``{"attrs": {...}}`` for an object one can index into.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FORMAT = 4
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "provider-schemas"


@dataclass(frozen=True)
class Package:
    """One PyPI package and the provider release it was generated from."""

    provider: str
    dist: str
    version: str
    provider_version: str

    @property
    def label(self) -> str:
        return f"{self.provider} {self.provider_version} ({self.dist} {self.version})"


# The lowest release of each provider that versions.tf allows, and the newest google 7.x
# (cdktn-provider-google 21.x is google 8.x, outside the pin). tests/system/test_provider_schema.py
# checks that the "lowest" set matches the floors in terraform/versions.tf.
SETS: dict[str, tuple[Package, ...]] = {
    "lowest": (
        Package("google", "cdktn-provider-google", "19.0.0", "7.31.0"),
        Package("random", "cdktf-cdktf-provider-random", "11.1.0", "3.7.1"),
        Package("archive", "cdktf-cdktf-provider-archive", "10.0.0", "2.4.1"),
        Package("time", "cdktf-cdktf-provider-time", "10.2.0", "0.12.0"),
    ),
    "newest": (
        Package("google", "cdktn-provider-google", "20.3.1", "7.46.1"),
        Package("random", "cdktn-provider-random", "15.0.1", "3.9.1"),
        Package("archive", "cdktn-provider-archive", "14.0.1", "2.8.1"),
        Package("time", "cdktn-provider-time", "14.0.2", "0.14.2"),
    ),
}

_KIND_BY_BASE = {
    "TerraformResource": "resource",
    "TerraformDataSource": "data",
    "TerraformEphemeralResource": "ephemeral",
    "TerraformProvider": "provider",
}
_LINK_RE = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/([\w-]+)/([\w.-]+)/docs(?:/[\w-]+/\w+)? (\w+)\}"
)
_ANCHOR_RE = re.compile(r"#(\w+) ")
_ENUM_RE = re.compile(r"Possible values: (\[[^\]]*\])")
# Some enums also take "" (a PSC forwarding rule's load_balancing_scheme); the docs say so in prose.
_EMPTY_ALLOWED_RE = re.compile(r"empty string value \('\"\"'\) is also supported")


def load(package: Package, cache_dir: Path = DEFAULT_CACHE) -> dict[str, Any]:
    """The reduced schema of one package, from the cache or downloaded once."""
    path = cache_dir / f"v{CACHE_FORMAT}" / f"{package.dist}-{package.version}.json.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = reduce_assembly(_download_assembly(package))
        if schema["provider_version"] != package.provider_version:
            got = schema["provider_version"]
            msg = f"{package.dist} {package.version} describes {package.provider} {got}, expected {package.provider_version}"
            raise RuntimeError(msg)
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump(schema, fh, separators=(",", ":"))
        tmp.replace(path)  # a crash mid-write never leaves a truncated cache entry
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


def _download_assembly(package: Package) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="provider-schema-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
        command += ["--only-binary=:all:", "--dest", tmp, f"{package.dist}=={package.version}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            msg = f"could not download {package.dist}=={package.version} from PyPI: {result.stderr.strip()[-500:]}"
            raise RuntimeError(msg)
        return _assembly_from_wheel(wheels[0])


def _assembly_from_wheel(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as zf:
        tarballs = [n for n in zf.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            msg = f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {tarballs}"
            raise RuntimeError(msg)
        with zf.open(tarballs[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.name.startswith("package/.jsii") and m.isfile()}  # type: ignore[union-attr]
    assembly: dict[str, Any] = json.loads(files["package/.jsii"])
    # jsii may store a large assembly compressed next to a small redirect document.
    if assembly.get("schema") == "jsii/file-redirect":
        assembly = json.loads(gzip.decompress(files["package/" + assembly["filename"]]))
    return assembly


def reduce_assembly(assembly: dict[str, Any]) -> dict[str, Any]:
    """Keep, per Terraform type, its arguments, blocks and readable attributes."""
    types: dict[str, Any] = assembly["types"]
    out: dict[str, Any] = {"resource": {}, "data": {}, "ephemeral": {}, "provider_config": None}
    provider = version = None
    for fqn, spec in types.items():
        kind = _KIND_BY_BASE.get(str(spec.get("base", "")).rpartition(".")[2])
        if kind is None:
            continue
        match = _LINK_RE.search(spec.get("docs", {}).get("summary", ""))
        if match is None:
            continue
        provider, version, tf_name = match.groups()
        config_fqn = next(p["type"]["fqn"] for p in spec["initializer"]["parameters"] if p["name"] == "config")
        block = _struct(types, config_fqn)
        _merge_readable(block, _readable(types, fqn))
        if kind == "provider":
            out["provider_config"] = block
        else:
            out[kind][tf_name] = block
    out.update(provider=provider, provider_version=version, package=f"{assembly['name']} {assembly['version']}")
    # The cdktf packages predate ephemeral resources; say so rather than report them missing.
    out["has_ephemeral"] = any(str(t.get("base", "")).endswith("TerraformEphemeralResource") for t in types.values())
    return out


def _struct(types: dict[str, Any], fqn: str) -> dict[str, Any]:
    """Arguments and nested blocks of a configuration struct."""
    block: dict[str, Any] = {"args": {}, "blocks": {}, "attrs": {}}
    for prop in types[fqn].get("properties", []):
        docs = prop.get("docs", {})
        anchor = _ANCHOR_RE.search(docs.get("remarks", ""))
        name = anchor.group(1) if anchor else _snake(prop["name"])
        required = not prop.get("optional", False)
        nested = _struct_fqn(types, prop["type"])
        if nested is not None:
            block["blocks"][name] = {"required": required, "block": _struct(types, nested)}
        else:
            # Long descriptions continue from the summary into the remarks.
            text = docs.get("summary", "") + " " + docs.get("remarks", "")
            enum = _ENUM_RE.search(text)
            values = json.loads(enum.group(1)) if enum else None
            if values is not None and _EMPTY_ALLOWED_RE.search(text):
                values.append("")
            block["args"][name] = {"required": required, "enum": values}
    return block


def _readable(types: dict[str, Any], fqn: str, depth: int = 0) -> dict[str, Any]:
    """Attributes a reference can read from a resource class or an OutputReference class."""
    attrs: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        name = prop["name"]
        if prop.get("static") or name.endswith("Input") or name == "internalValue":
            continue
        target = _output_class(types, prop["type"])
        attrs[_snake(name)] = {"attrs": _readable(types, target, depth + 1)} if target and depth < 8 else None
    return attrs


def _merge_readable(block: dict[str, Any], readable: dict[str, Any]) -> None:
    """Readable = arguments + blocks + computed attributes, keyed by Terraform name, at every level."""
    by_key = {_key(n): n for n in (*block["args"], *block["blocks"])}
    merged: set[str] = set()
    for name, node in readable.items():
        tf_name = by_key.get(_key(name), name)
        if tf_name in block["blocks"]:
            _merge_readable(block["blocks"][tf_name]["block"], (node or {}).get("attrs", {}))
            merged.add(tf_name)
        elif tf_name not in block["args"]:
            block["attrs"][tf_name] = node
    for name, spec in block["blocks"].items():
        if name not in merged:
            _merge_readable(spec["block"], {})
        block["attrs"][name] = {"attrs": spec["block"]["attrs"]}
    for name in block["args"]:
        block["attrs"][name] = None


def _struct_fqn(types: dict[str, Any], type_ref: dict[str, Any]) -> str | None:
    for fqn in _fqns(type_ref):
        if types.get(fqn, {}).get("datatype"):
            return fqn
    return None


def _output_class(types: dict[str, Any], type_ref: dict[str, Any]) -> str | None:
    for fqn in _fqns(type_ref):
        if fqn.endswith("List") and fqn[: -len("List")] + "OutputReference" in types:
            return fqn[: -len("List")] + "OutputReference"
        if fqn.endswith("OutputReference") and fqn in types:
            return fqn
    return None


def _fqns(type_ref: dict[str, Any]) -> list[str]:
    if "fqn" in type_ref:
        return [type_ref["fqn"]]
    if "collection" in type_ref:
        return _fqns(type_ref["collection"]["elementtype"])
    if "union" in type_ref:
        return [f for t in type_ref["union"]["types"] for f in _fqns(t)]
    return []


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _key(name: str) -> str:
    """Names compared without underscores or case: cdktf spells output_base64sha256 outputBase64Sha256."""
    return name.replace("_", "").lower()


if __name__ == "__main__":  # pragma: no cover - manual inspection aid
    for pkgs in SETS.values():
        for pkg in pkgs:
            schema = load(pkg)
            counts = {kind: len(schema[kind]) for kind in ("resource", "data", "ephemeral")}
            print(pkg.label, counts)
