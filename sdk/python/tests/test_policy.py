"""capsule.check and capsule.Policy against the Rust front-end and capsulec."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import capsule
from conftest import REPO

FIXTURES = sorted((REPO / "fixtures" / "policies").glob("*/*.yaml"))


def test_fixtures_are_found():
    assert len(FIXTURES) > 50


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_matches_capsulec_on_every_fixture(fixture: Path, capsulec):
    source = fixture.read_bytes()
    name = str(fixture)
    ours = capsule.check(source, name=name)
    out = subprocess.run([capsulec, "check", "--format", "json", name], capture_output=True, text=True)
    theirs = json.loads(out.stdout)["diagnostics"]
    assert [d.code for d in ours] == [d["code"] for d in theirs]
    assert [(d.line, d.column) for d in ours] == [(d["span"]["line"], d["span"]["column"]) for d in theirs]
    assert [d.severity for d in ours] == [d["severity"] for d in theirs]
    # render(): exactly the text capsulec check prints, diagnostic by diagnostic.
    plain = subprocess.run([capsulec, "check", name], capture_output=True, text=True, env={"NO_COLOR": "1"})
    printed = plain.stdout + plain.stderr
    for d in ours:
        assert d.render() in printed
    assert "".join(d.render() for d in ours) in printed


def test_default_policy_has_no_errors_or_warnings():
    # Only notes: N0402 says which syscall rules macOS cannot enforce.
    assert [d.severity for d in capsule.check(capsule.Policy.default().source)] in ([], ["note"])


def test_diagnostic_fields():
    (d,) = [d for d in capsule.check("version: 1\nsyscalls:\n  allow: [opne]\n") if d.severity == "error"]
    assert d.code.startswith("E")
    assert (d.line, d.column) == (3, 11)
    assert "opne" in d.message
    assert d.help and "open" in d.help
    assert "^^^^" in d.render()


def test_policy_error_lists_every_diagnostic():
    with pytest.raises(capsule.PolicyError) as info:
        capsule.Policy.from_yaml("version: 1\nsyscalls:\n  allow: [opne, clsoe]\n")
    codes = [d.code for d in info.value.diagnostics if d.severity == "error"]
    assert len(codes) == 2
    assert isinstance(info.value, capsule.CapsuleError) and isinstance(info.value, ValueError)
    assert "opne" in str(info.value) and "clsoe" in str(info.value)


def test_check_accepts_str_and_bytes_and_refuses_others():
    assert capsule.check(b"version: 1\n") == capsule.check("version: 1\n")
    with pytest.raises(TypeError):
        capsule.check(1)  # type: ignore[arg-type]


def test_load_and_default(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(capsule.Policy.default().source)
    assert capsule.Policy.load(path).source == capsule.Policy.default().source
    with pytest.raises(FileNotFoundError):
        capsule.Policy.load(tmp_path / "missing.yaml")


def test_json_form_round_trips_and_points_into_json(capsulec, tmp_path):
    default = capsule.Policy.default()
    text = default.to_json()
    doc = json.loads(text)
    assert doc["version"] == 1 and doc["name"] == "capsule-default"
    again = capsule.Policy.from_json(text)
    assert again.format == "json"
    assert json.loads(again.to_json()) == doc
    # capsulec accepts the JSON file.
    path = tmp_path / "p.json"
    path.write_text(text)
    assert subprocess.run([capsulec, "check", str(path)], capture_output=True).returncode == 0
    # Errors in JSON point into the JSON text.
    bad = '{\n  "version": 1,\n  "syscalls": {"allow": ["opne"]}\n}\n'
    (d,) = [d for d in capsule.check(bad, name="bad.json") if d.severity == "error"]
    assert d.line == 3 and bad.splitlines()[2][d.column - 1 :].startswith('"opne"')


def test_derive_adds_paths_and_ports():
    base = capsule.Policy.default()
    derived = base.derive(write=["/srv/out"], connect=[443], name="derived")
    doc = derived.to_dict()
    assert "/srv/out" in doc["filesystem"]["write"] and "/srv/out" in doc["filesystem"]["read"]
    assert doc["network"]["connect"] == ["tcp/443"]
    assert doc["name"] == "derived"
    assert base.to_dict()["network"]["connect"] == []  # the base is unchanged
    with pytest.raises(ValueError):
        base.derive(connect=[70000])
    with pytest.raises(capsule.PolicyError):
        base.derive(read=["relative/path"])


def test_schema_is_shipped():
    from importlib import resources

    shipped = resources.files("capsule").joinpath("capsule.schema.json").read_text()
    # The same text the compiler generates (`capsulec schema`) and docs/ carries.
    assert shipped == capsule._native.schema() == (REPO / "docs" / "capsule.schema.json").read_text()
    schema = json.loads(shipped)
    assert schema["type"] == "object" and "version" in schema["properties"]


def test_every_public_name_has_a_docstring():
    import inspect

    missing = []
    for name in capsule.__all__:
        obj = getattr(capsule, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(getattr(member, "__func__", member)):
                    if not inspect.getdoc(member):
                        missing.append(f"{name}.{attr}")
    assert missing == []
    assert (Path(capsule.__file__).parent / "py.typed").exists()
