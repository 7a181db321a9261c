"""layout.tree and the invoke tasks, run as a user runs them (real invoke, kustomize and Graphviz)."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxops.layout import dot, tree_text
from fluxops.layout.apply_order import apply_order, blocks, ordered
from fluxops.layout.model import Cluster, Phase
from fluxops.layout.tree import load
from fluxops.shell import local
from tests.layout_fixtures import REPO, pristine_root

INVOKE = [sys.executable, "-m", "invoke"]
SHIPPED = ("lab", "phx")
# a phase's head line: tree glyphs, level badge, name, markers, path, then what it waits for
HEAD = re.compile(r"^([│├└─┬ ]+) (\S+) (\S+) +(\S.*?)  +(\S+)(?: +after (.*))?$")


def shipped(name: str) -> Cluster:
    return load(pristine_root(), name).clusters[name]


def heads(text: str) -> dict[str, dict[str, str]]:
    """Phase name -> glyphs, badge, markers, path and the rest of its head line."""
    out = {}
    for line in text.splitlines()[1:]:
        match = HEAD.match(line)
        if match:
            glyphs, badge, name, flags, path, after = match.groups()
            out[name] = {"glyphs": glyphs, "badge": badge, "flags": flags, "path": path, "after": after or ""}
    return out


def phase(name: str, deps: tuple[str, ...] = (), wait: bool = True, sops: bool = False) -> Phase:
    spec: dict[str, Any] = {
        "path": f"./deploy/{name}",
        "wait": wait,
        "dependsOn": [{"name": d} for d in deps],
    }
    if sops:
        spec["decryption"] = {"provider": "sops", "secretRef": {"name": "sops-age"}}
    return Phase(name, "flux-system", {"spec": spec})


def made_up() -> Cluster:
    """A cluster whose phases are named nothing like the proposal's, in no particular file order."""
    web = phase("web", ("net", "db"), wait=False)
    web.objects = [{"kind": "Deployment", "metadata": {"name": "shop"}}]
    return Cluster(
        "edge",
        Path("/nonexistent"),
        [
            web,
            phase("base"),
            phase("net", ("base",), sops=True),
            phase("db", ("base",)),
            phase("disk", ("base",)),
        ],
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def layout(source: str) -> tuple[dict[str, tuple[float, float]], list[tuple[str, str, str]], dict[str, Any]]:
    """Graphviz's own layout of ``source``: node positions, edges (tail, head, style), the graph."""
    graph = json.loads(local().run(["dot", "-Tjson"], stdin=source, timeout=60).stdout)
    objects = graph["objects"]
    pos = {o["name"]: tuple(float(v) for v in o["pos"].split(",")) for o in objects if "pos" in o}
    edges = [
        (objects[e["tail"]]["name"], objects[e["head"]]["name"], e.get("style", "solid"))
        for e in graph["edges"]
    ]
    return pos, edges, graph


# ---- text


@pytest.mark.parametrize("name", ["phx"])  # lab's: the test below
def test_text_draws_levels_in_apply_order(name: str) -> None:
    cluster = shipped(name)
    text = tree_text.text(cluster)
    found = heads(text)
    assert text.splitlines()[0].startswith(f"cluster {name}  (5 phases, 7 components on 4 levels")
    phases = [n for n, h in found.items() if h["badge"] != tree_text.COMPONENT_BADGE]
    assert phases == ["crds", "infrastructure", "storage", "infrastructure-config", "apps"]
    assert {n: found[n]["badge"] for n in phases} == {
        "crds": "①",
        "infrastructure": "②",
        "storage": "②",
        "infrastructure-config": "③",
        "apps": "④",
    }
    # parallel phases branch off one spine point, and say so
    assert found["infrastructure"]["glyphs"] == "├─┬" and found["storage"]["glyphs"] == "│ └"
    assert found["infrastructure"]["after"] == "crds  (parallel with storage)"
    assert found["storage"]["after"] == "crds  (parallel with infrastructure)"
    assert found["infrastructure-config"]["after"] == "infrastructure, storage"
    assert found["apps"]["glyphs"] == "└──" and found["apps"]["after"] == "infrastructure-config"
    for p in cluster.phases:
        checks = [c["name"] for c in p.spec.get("healthChecks", [])]
        expected = "wait" if p.wait else f"health: {', '.join(checks)}" if checks else "no wait"
        assert found[p.name]["path"] == p.path
        assert found[p.name]["flags"].removesuffix(", sops") == expected, p.name
        assert found[p.name]["flags"].endswith("sops") == (p.decryption.get("provider") == "sops")
    # a phase with healthChecks waits for those, not for nothing
    assert found["infrastructure"]["flags"] == "health: metallb"
    assert found["infrastructure-config"]["flags"] == "health: traefik-config"
    assert found["traefik"]["flags"] == "wait, sops"  # the marker is kept, and not vacuous
    assert found["apps"]["flags"] == "no wait"
    # components are drawn beneath the phase that applies them, after what they depend on
    lines = text.splitlines()
    at = {m.group(3): i for i, line in enumerate(lines) if (m := HEAD.match(line))}
    assert at["infrastructure"] < at["external-dns"] < at["metallb"] < at["traefik"] < at["storage"]
    assert at["infrastructure-config"] < at["metallb-config"] < at["traefik-config"] < at["apps"]
    assert at["apps"] < at["uptime-kuma"]
    assert all(found[c]["badge"] == tree_text.COMPONENT_BADGE for c in ("metallb", "traefik", "uptime-kuma"))
    assert (
        found["traefik"]["glyphs"] == "│ │ └" and found["traefik"]["after"] == "crds, storage, metallb-config"
    )
    assert lines[at["metallb"] + 1] == "│ │ │       HelmRelease: metallb"
    assert lines[at["infrastructure"] + 1].startswith("│ │ ├ ")  # no Kustomization count: drawn below
    assert re.search(r"^│       CRDs: metallb\.io \(\d+\), traefik\.io \(\d+\)$", text, re.M)


def test_text_draws_lab_components_under_their_phase_after_what_they_depend_on() -> None:
    """lab's phases apply one Kustomization per component: each is drawn beneath its phase, below
    what it depends on there, external-dns last (after AdGuard, which needs the pool of
    infrastructure-config)."""
    cluster = shipped("lab")
    text = tree_text.text(cluster)
    found = heads(text)
    digits = "①②③④⑤⑥⑦⑧⑨⑩"
    phases = {n: digits.index(h["badge"]) for n, h in found.items() if h["badge"] in digits}
    assert phases == {"crds": 0, "infrastructure": 1, "storage": 1, "infrastructure-config": 2, "apps": 3}
    assert set(found) == {p.name for p in cluster.phases} and len(found) == 15
    position = list(found)
    infrastructure = position[position.index("infrastructure") + 1 : position.index("storage")]
    config = position[position.index("infrastructure-config") + 1 : position.index("apps")]
    for group in (infrastructure, config, position[position.index("apps") + 1 :]):
        for name in group:  # a component below what it depends on inside its phase
            deps = [d for d in cluster.phase(name).depends_on if d in group]  # type: ignore[union-attr]
            assert all(group.index(d) < group.index(name) for d in deps), name
    assert infrastructure[-1] == "external-dns" and set(infrastructure) == {
        "metallb",
        "traefik",
        "adguard",
        "external-dns",
    }
    assert found["external-dns"]["after"] == "crds, adguard"
    assert "metallb-config" in found["adguard"]["after"] and "storage" in found["traefik"]["after"]
    assert found["traefik"]["flags"] == "wait, sops" and found["apps"]["flags"] == "no wait"
    assert found["infrastructure-config"]["flags"] == "health: metallb-config, traefik-config"


def test_components_are_drawn_under_their_phase_and_a_stuck_one_says_why() -> None:
    cluster = made_up()
    net = next(p for p in cluster.phases if p.name == "net")
    net.obj["spec"]["healthChecks"] = [{"kind": "Kustomization", "name": "dns"}]
    net.obj["spec"].pop("wait")
    net.objects = [
        {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": n}}
        for n in ("vpn", "dns")
    ]
    cluster.phases += [phase("dns", ("base",)), phase("vpn", ("dns", "gone"))]
    cluster.phases.append(phase("shop", ("dns",)))  # a phase after a component: after the phase
    text = tree_text.text(cluster)
    found = heads(text)
    assert text.splitlines()[0].startswith("cluster edge  (6 phases, 2 components on 3 levels")
    assert found["net"]["flags"] == "health: dns, sops"
    assert found["dns"] == {
        "glyphs": "│   ├",
        "badge": tree_text.COMPONENT_BADGE,
        "flags": "wait",
        "path": "./deploy/dns",
        "after": "base",
    }
    assert found["vpn"]["glyphs"] == "│   └" and found["vpn"]["badge"] == tree_text.STUCK_BADGE
    assert (
        found["vpn"]["after"] == "dns, gone (missing)  never applied: the cluster has no Kustomization gone"
    )
    assert found["shop"]["badge"] == "③" and found["web"]["badge"] == "③"
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if " ② net " in x)) < lines.index(
        next(x for x in lines if " · dns " in x)
    )


def test_text_levels_come_from_depends_on_not_names() -> None:
    assert tree_text.text(made_up()) == "\n".join(
        [
            "cluster edge  (5 phases on 3 levels, apply order top to bottom)",
            "├── ① base  wait        ./deploy/base",
            "│       (nothing)",
            "├─┬ ② db    wait        ./deploy/db    after base  (parallel with disk, net)",
            "│ │     (nothing)",
            "│ ├ ② disk  wait        ./deploy/disk  after base  (parallel with db, net)",
            "│ │     (nothing)",
            "│ └ ② net   wait, sops  ./deploy/net   after base  (parallel with db, disk)",
            "│       (nothing)",
            "└── ③ web   no wait     ./deploy/web   after net, db",
            "        Deployment: shop",
        ]
    )


def test_phases_flux_never_applies_are_drawn_last_with_the_reason() -> None:
    cluster = made_up()
    cluster.phases += [
        phase("a", ("b",)),
        phase("b", ("a",)),
        phase("c", ("a",)),
        phase("jobs", ("web", "later")),
    ]
    order = apply_order(cluster)
    assert [[p.name for p in level] for level in order.levels] == [["base"], ["db", "disk", "net"], ["web"]]
    assert [p.name for p in ordered(cluster)][-4:] == ["a", "b", "c", "jobs"]
    found = heads(tree_text.text(cluster))
    assert {n: h["badge"] for n, h in found.items() if h["badge"] == "✗"} == dict.fromkeys("abc", "✗") | {
        "jobs": "✗"
    }
    assert found["a"]["after"] == "b  never applied: in a dependsOn cycle"
    assert found["c"]["after"] == "a  never applied: waits for a, which is never applied"
    assert (
        found["jobs"]["after"]
        == "web, later (missing)  never applied: the cluster has no Kustomization later"
    )
    assert found["web"]["glyphs"] == "├──" and found["a"]["glyphs"] == "└─┬"


def test_bootstrap_dependency_is_applied_first() -> None:
    cluster = Cluster("solo", Path("/nonexistent"), [phase("only", ("flux-system",))])
    assert heads(tree_text.text(cluster))["only"] == {
        "glyphs": "└──",
        "badge": "①",
        "flags": "wait",
        "path": "./deploy/only",
        "after": "flux-system",
    }


def test_styled_text_is_the_plain_text_in_colour() -> None:
    cluster = made_up()
    styled = tree_text.styled(cluster)
    assert styled.plain == tree_text.text(cluster)
    assert {str(span.style) for span in styled.spans} >= {"bold cyan", "green", "yellow", "magenta"}


# ---- DOT and rendering


@pytest.mark.parametrize("name", SHIPPED)
def test_png_is_readable_and_edges_follow_apply_order(name: str, tmp_path: Path) -> None:
    assert shutil.which("dot"), "Graphviz dot is missing: scripts/setup.sh installs it"
    cluster = shipped(name)
    target = tmp_path / f"{name}.png"
    dot.write(cluster, "png", target)
    width, height = png_size(target)
    assert max(width, height) <= 4 * min(width, height), f"{name}: {width}x{height}"

    pos, edges, graph = layout(dot.dot(cluster))
    assert graph["rankdir"] == "LR" and graph["label"].startswith(f"cluster {name}:")
    phase_edges = [(t, h, s) for t, h, s in edges if not t.startswith("legend:")]
    by_name = {p.name: p for p in cluster.phases}
    expected = {(d, p.name) for p in cluster.phases for d in p.depends_on}
    assert {(t, h) for t, h, _ in phase_edges} == expected
    for tail, head, style in phase_edges:
        assert pos[tail][0] < pos[head][0], f"{tail} -> {head} points against the apply order"
        assert style == ("solid" if blocks(by_name[tail]) else "dashed")
    # one column per level: parallel phases share a rank
    assert pos["infrastructure"][0] == pos["storage"][0]
    assert pos["crds"][0] < pos["infrastructure"][0] < pos["infrastructure-config"][0] < pos["apps"][0]
    legend = [t for t, _, _ in edges if t.startswith("legend:")]
    assert {"legend:wait", "legend:nowait", "legend:sops"} <= set(legend)
    assert [s for t, _, s in edges if t == "legend:nowait"] == ["dashed"]


def test_dot_marks_no_wait_sops_and_missing_dependencies() -> None:
    cluster = made_up()
    cluster.phases.append(phase("jobs", ("web", "nowhere")))
    source = dot.dot(cluster)
    assert '"web" [style="rounded,dashed"' in source
    assert re.search(r'"net" \[style="rounded,filled", .*fillcolor="#fff2b3"\];', source)
    assert '"web" -> "jobs" [style=dashed];' in source and '"net" -> "web";' in source
    assert '"nowhere" -> "jobs" [color="#c0392b"];' in source
    assert '{ rank=same; "db"; "disk"; "net"; }' in source
    pos, edges, _ = layout(source)
    assert ("nowhere", "jobs", "solid") in edges and pos["nowhere"][0] < pos["jobs"][0]


def test_labels_are_escaped_for_graphviz(tmp_path: Path) -> None:
    odd = phase('we"ird<&>')
    odd.objects = [{"kind": "Deployment", "metadata": {"name": "a<b>&c"}}]
    cluster = Cluster("odd", Path("/nonexistent"), [odd])
    dot.write(cluster, "svg", tmp_path / "odd.svg")
    svg = (tmp_path / "odd.svg").read_text(encoding="utf-8")
    assert "we&quot;ird&lt;&amp;&gt;" in svg and "a&lt;b&gt;&amp;c" in svg


def test_targets_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    from fluxops.errors import LayoutError

    with pytest.raises(LayoutError, match=r"the folder .*missing does not exist"):
        dot.check_target("png", tmp_path / "missing" / "x.png")
    with pytest.raises(LayoutError, match="the formats are dot, png, svg"):
        dot.check_target("pdf", tmp_path / "x.pdf")
    assert dot.per_cluster(Path("out/graph.png"), "lab", many=True) == Path("out/graph-lab.png")
    assert dot.per_cluster(Path("out/graph.png"), "lab", many=False) == Path("out/graph.png")


# ---- the invoke tasks


def test_invoke_list_shows_layout_tasks() -> None:
    out = local().run([*INVOKE, "--list"], cwd=REPO, timeout=60).stdout
    for name in ("layout.validate", "layout.tree", "layout.new-cluster", "layout.audit"):
        assert name in out


def test_invoke_validate_json() -> None:
    result = local().run([*INVOKE, "layout.validate", "--json"], cwd=REPO, timeout=300)
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["errors"] == 0
    assert {"lab", "phx"} <= set(data["clusters"])


def test_invoke_validate_unknown_cluster_exits_with_a_message() -> None:
    result = local().run([*INVOKE, "layout.validate", "--cluster", "nope"], cwd=REPO, timeout=60, check=False)
    assert result.rc == 1
    assert "unknown cluster 'nope'" in result.stderr and "lab" in result.stderr


def test_invoke_tree_writes_dot_png_and_svg(tmp_path: Path) -> None:
    result = local().run(
        [
            *INVOKE,
            "layout.tree",
            *(a for f in ("dot", "png", "svg") for a in (f"--{f}", str(tmp_path / f"g.{f}"))),
        ],
        cwd=REPO,
        timeout=120,
    )
    assert "\x1b[" not in result.stdout, "piped output has no colour"
    assert "cluster lab  (" in result.stdout and "\ncluster phx  (" in result.stdout
    assert "no wait: once they are applied" in result.stdout
    for name in SHIPPED:
        assert (tmp_path / f"g-{name}.dot").read_text(encoding="utf-8").startswith(f'digraph "flux-{name}"')
        assert png_size(tmp_path / f"g-{name}.png")[0] > 0
        assert "<svg" in (tmp_path / f"g-{name}.svg").read_text(encoding="utf-8")
        assert f"wrote {tmp_path / f'g-{name}.png'}" in result.stdout


def test_invoke_tree_dot_to_stdout_keeps_stdout_for_the_graph(tmp_path: Path) -> None:
    result = local().run(
        [*INVOKE, "layout.tree", "--cluster", "phx", "--dot", "-", "--svg", str(tmp_path / "phx.svg")],
        cwd=REPO,
        timeout=120,
    )
    assert result.stdout.startswith('digraph "flux-phx"') and result.stdout.endswith("}\n")
    assert f"wrote {tmp_path / 'phx.svg'}" in result.stderr


def test_invoke_tree_without_graphviz_names_the_package(tmp_path: Path) -> None:
    # PATH without Graphviz (kubectl is found through the venv, not PATH)
    result = local().run(
        [*INVOKE, "layout.tree", "--png", str(tmp_path / "g.png")],
        cwd=REPO,
        timeout=120,
        check=False,
        env={"PATH": str(tmp_path)},
    )
    assert result.rc == 1 and result.stdout == ""
    assert "Graphviz's `dot` command" in result.stderr and "apt-get install graphviz" in result.stderr
    assert not list(tmp_path.iterdir())


def test_invoke_tree_rejects_png_to_stdout() -> None:
    result = local().run([*INVOKE, "layout.tree", "--png", "-"], cwd=REPO, timeout=60, check=False)
    assert result.rc == 1 and "--png and --svg write files" in result.stderr


def _on_terminal(env: dict[str, str]) -> str:
    """layout.tree's output when its stdout is a terminal."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    proc = subprocess.Popen(
        [*INVOKE, "layout.tree", "--cluster", "phx"], stdout=follower, stderr=follower, cwd=REPO, env=environ
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_only_without_no_color() -> None:
    coloured = _on_terminal({"TERM": "xterm-256color"})
    plain = _on_terminal({"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert "\x1b[" in coloured and "\x1b[" not in plain
    strip = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert strip.replace("\r\n", "\n") == plain.replace("\r\n", "\n")
    assert "├─┬ ② infrastructure" in plain


def test_invoke_new_cluster_refuses_existing_name() -> None:
    result = local().run([*INVOKE, "layout.new-cluster", "--name", "phx"], cwd=REPO, timeout=60, check=False)
    assert result.rc == 1 and "already exists" in result.stderr
