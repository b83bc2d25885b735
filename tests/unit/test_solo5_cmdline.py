"""The solo5 backend: prepare checks, tender lookup and albatross's exact command line."""

from __future__ import annotations

import hashlib
import sys
import zlib
from pathlib import Path

import pytest

from albatross_py.host.files import Layout
from albatross_py.virt.base import BackendError
from albatross_py.virt.solo5 import (
    Solo5Backend,
    Solo5Prepared,
    derive_mac,
    format_mac,
    uncompressed_image,
)
from albatross_py.virt.solo5_elf import Abi, make_solo5_elf
from albatross_py.wire.names import Name
from albatross_py.wire.types import BlockDevice, BridgeInfo, NetDevice, Typ, UnikernelConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from standin import install_standin

NAME = Name.of_string("foo:bar")


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "run").mkdir()
    (tmp_path / "db").mkdir()
    (tmp_path / "bin").mkdir()
    return Layout(tmp_path / "run", tmp_path / "db")


@pytest.fixture
def bindir(layout: Layout) -> Path:
    return layout.tmpdir.parent / "bin"


@pytest.fixture
def backend(layout: Layout, bindir: Path) -> Solo5Backend:
    install_standin(layout.dbdir, "solo5-hvt")
    # An empty search path keeps the host's own tenders (if any) out of the tests.
    return Solo5Backend(layout, search_path=str(bindir), platform="linux")


def config(**kw: object) -> UnikernelConfig:
    image = make_solo5_elf("hvt", 2, nets=["service"], blocks=["storage"])
    defaults: dict[str, object] = {
        "image": image,
        "cpuids": frozenset({2, 0}),
        "memory": 64,
        "bridges": (NetDevice("service", "br0"),),
        "blocks": (BlockDevice("storage", "data", 4096),),
        "argv": ("--hello", "--world=1"),
    }
    defaults.update(kw)
    return UnikernelConfig(**defaults)  # type: ignore[arg-type]


def test_mac_derivation_by_hand() -> None:
    # md5("servicefoo:bar") = 0c85fb…: netif then Name.to_string, no separator.
    assert hashlib.md5(b"servicefoo:bar").hexdigest().startswith("0c85fb")
    assert derive_mac("service", NAME) == bytes.fromhex("0080410c85fb")
    assert format_mac(derive_mac("service", NAME)) == "00:80:41:0c:85:fb"
    assert format_mac(derive_mac("net0", Name.of_string("web"))) == "00:80:41:3a:60:00"


def test_exact_command_line(backend: Solo5Backend, layout: Layout) -> None:
    prepared = backend.prepare(NAME, config())
    assert isinstance(prepared, Solo5Prepared)
    assert backend.command_line(prepared, ["vmmtap3"]) == [
        "taskset", "-c", "0,2",
        f"{layout.dbdir}/solo5-hvt",
        "--mem=64",
        "--net:service=vmmtap3",
        "--net-mac:service=00:80:41:0c:85:fb",
        f"--block:storage={layout.dbdir}/block/foo:data",
        "--block-sector-size:storage=4096",
        "--",
        f"{layout.tmpdir}/foo:bar.img",
        "--name=bar",
        "--hello", "--world=1",
    ]  # fmt: skip


def test_prepare_results(backend: Solo5Backend, layout: Layout) -> None:
    cfg = config()
    prepared = backend.prepare(NAME, cfg)
    assert prepared.image == cfg.image
    assert prepared.digest == hashlib.sha256(cfg.image).digest()
    assert prepared.abi == Abi("hvt", 2)
    assert prepared.tender == layout.dbdir / "solo5-hvt"
    assert prepared.host_bridges == ("br0",)
    assert prepared.blocks == (("storage", Name.of_string("foo:data"), 4096),)
    assert backend.bridge_infos(prepared, ["vmmtap3"]) == (
        BridgeInfo("service", "br0", bytes.fromhex("0080410c85fb")),
    )


def test_defaults_explicit_mac_and_options(backend: Solo5Backend, layout: Layout) -> None:
    mac = bytes.fromhex("02aabbccddee")
    cfg = config(
        cpuids=frozenset({1}),
        bridges=(NetDevice("service", mac=mac),),
        blocks=(BlockDevice("storage"),),
        add_name=False,
        argv=None,
    )
    prepared = backend.prepare(NAME, cfg)
    assert prepared.host_bridges == ("service",)
    assert backend.command_line(prepared, ["vmmtap0"]) == [
        "taskset", "-c", "1",
        f"{layout.dbdir}/solo5-hvt",
        "--mem=64",
        "--net:service=vmmtap0",
        "--net-mac:service=02:aa:bb:cc:dd:ee",
        f"--block:storage={layout.dbdir}/block/foo:storage",
        "--",
        f"{layout.tmpdir}/foo:bar.img",
    ]  # fmt: skip


def test_no_drop_path_and_freebsd(layout: Layout, bindir: Path) -> None:
    install_standin(layout.dbdir, "solo5-hvt")
    backend = Solo5Backend(layout, search_path=str(bindir), drop_path=False, platform="freebsd14")
    image = make_solo5_elf("hvt", 2)
    prepared = backend.prepare(Name.of_string("a:b:web"), UnikernelConfig(image=image))
    assert backend.command_line(prepared, []) == [
        "cpuset", "-l", "0",
        f"{layout.dbdir}/solo5-hvt",
        "--mem=32",
        "--",
        f"{layout.tmpdir}/a:b:web.img",
        "--name=a:b:web",
    ]  # fmt: skip
    assert backend.required_commands() == ("cpuset",)


def test_root_level_unikernel(backend: Solo5Backend, layout: Layout) -> None:
    prepared = backend.prepare(Name.of_string("hello"), UnikernelConfig(image=make_solo5_elf()))
    argv = backend.command_line(prepared, [])
    assert argv[-2:] == [f"{layout.tmpdir}/:hello.img", "--name=hello"]


def test_tap_count_must_match(backend: Solo5Backend) -> None:
    prepared = backend.prepare(NAME, config())
    with pytest.raises(BackendError, match="1 taps needed, 0 given"):
        backend.command_line(prepared, [])
    with pytest.raises(BackendError, match="invalid tap name"):
        backend.command_line(prepared, ["tap=evil"])


def test_compressed_image(backend: Solo5Backend) -> None:
    raw = config().image
    cfg = config(image=zlib.compress(raw, 9), compressed=True)
    assert uncompressed_image(cfg) == raw
    prepared = backend.prepare(NAME, cfg)
    assert prepared.image == raw
    assert prepared.digest == hashlib.sha256(raw).digest()
    with pytest.raises(BackendError, match="failed to uncompress"):
        backend.prepare(NAME, config(image=b"not zlib", compressed=True))
    with pytest.raises(BackendError, match="truncated"):
        backend.prepare(NAME, config(image=zlib.compress(raw)[:-10], compressed=True))
    with pytest.raises(BackendError, match="larger than"):
        uncompressed_image(cfg, limit=100)


def test_manifest_mismatch(backend: Solo5Backend) -> None:
    with pytest.raises(BackendError, match=r"^specified block device\(s\) does not match"):
        backend.prepare(NAME, config(blocks=()))
    with pytest.raises(BackendError, match=r"^specified bridge\(s\) does not match"):
        backend.prepare(NAME, config(bridges=(NetDevice("other", "br0"),)))


def test_bad_images(backend: Solo5Backend) -> None:
    with pytest.raises(BackendError, match=r"^not an ELF image$"):
        backend.prepare(NAME, config(image=b"hello"))
    with pytest.raises(BackendError, match=r"^unsupported solo5 target muen$"):
        backend.prepare(NAME, config(image=make_solo5_elf("muen", 3)))
    with pytest.raises(BackendError, match="cannot run typ bhyve"):
        backend.prepare(NAME, config(typ=Typ.BHYVE))


def test_tender_search_order(layout: Layout, bindir: Path) -> None:
    backend = Solo5Backend(layout, search_path=str(bindir))
    abi = Abi("hvt", 2)
    installed = [
        install_standin(bindir, "solo5-hvt"),
        install_standin(layout.dbdir, "solo5-hvt"),
        install_standin(bindir, "solo5-hvt.2"),
        install_standin(layout.dbdir, "solo5-hvt.2"),
    ]
    # Best first: <dbdir>/tender.abi, tender.abi in PATH, <dbdir>/tender, tender in PATH.
    for best in reversed(installed):
        assert backend.find_tender(abi) == best
        best.unlink()
    with pytest.raises(BackendError) as e:
        backend.find_tender(abi)
    assert str(e.value) == (
        f"tender does not exist, looked for {layout.dbdir}/solo5-hvt.2, solo5-hvt.2, "
        f"{layout.dbdir}/solo5-hvt, solo5-hvt"
    )


def test_tender_not_executable_is_skipped(layout: Layout, bindir: Path) -> None:
    backend = Solo5Backend(layout, search_path=str(bindir))
    install_standin(layout.dbdir, "solo5-hvt.2").chmod(0o644)
    fallback = install_standin(layout.dbdir, "solo5-hvt")
    assert backend.find_tender(Abi("hvt", 2)) == fallback


def test_tender_abi_version_must_match(layout: Layout, bindir: Path) -> None:
    backend = Solo5Backend(layout, search_path=str(bindir))
    install_standin(layout.dbdir, "solo5-hvt", abi=1)
    with pytest.raises(BackendError) as e:
        backend.prepare(NAME, config())
    assert str(e.value).startswith(
        "unexpected solo5 tender --version output, expected one line with 'ABI version 2', got "
    )
    assert "ABI version 1" in str(e.value)


def test_spt_image_uses_spt_tender(layout: Layout, bindir: Path) -> None:
    backend = Solo5Backend(layout, search_path=str(bindir))
    install_standin(layout.dbdir, "solo5-hvt")
    with pytest.raises(BackendError, match=r"looked for .*solo5-spt.2"):
        backend.prepare(NAME, UnikernelConfig(image=make_solo5_elf("spt", 2)))
    spt = install_standin(bindir, "solo5-spt")
    prepared = backend.prepare(NAME, UnikernelConfig(image=make_solo5_elf("spt", 2)))
    assert isinstance(prepared, Solo5Prepared)
    assert prepared.tender == spt
    assert backend.command_line(prepared, [])[3] == str(spt)
