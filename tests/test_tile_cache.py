"""The packed-tile cache: a model loaded a second time maps its tiles from disk instead of reading and packing its
weights again, and computes exactly what it did; any change to the model file, dtype or wafer builds it anew."""
from __future__ import annotations

import json
import os

import numpy as np
import numba
import pytest
from gguf import GGMLQuantizationType as T
from store_layouts import tiny_folder, tiny_gguf

from spark_nb.edits import BUILTIN
from spark_nb.engine import engine as engine_module
from spark_nb.engine import tile_cache
from spark_nb.engine.engine import Engine
from spark_nb.model import load_checkpoint
from spark_nb.wafer import cycles
from spark_nb.wafer import placement as layouts
from spark_nb.wafer.packing import pack
from spark_nb.wafer.spec import get_spec as spec

PROMPT = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tile_cache, "MIN_PARAMS", 0)  # tiny models are kept too
    return tmp_path / "xdg" / "spark-nb" / "tiles"


def loads(monkeypatch):
    """Count the checkpoints read (a load from the cache reads none)."""
    calls = []
    real = engine_module.load_checkpoint
    monkeypatch.setattr(engine_module, "load_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def greedy(engine) -> list[int]:
    return [i for e in engine.stream(PROMPT, max_new_tokens=8, ignore_eos=True) for i in getattr(e, "token_ids", ())]


@pytest.mark.parametrize("kind", ["gguf", "folder"])
@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_second_load_maps_the_same_tiles(cache, tmp_path, monkeypatch, kind, dtype):
    path = tiny_gguf(tmp_path / "m.gguf", kinds=(T.Q8_0, T.Q4_0, T.F16)) if kind == "gguf" else tiny_folder(
        tmp_path / "folder")
    if kind == "folder":  # a model trained on SPM prompts says so; the cached tokenizer must too
        settings = path / "tokenizer_config.json"
        settings.write_text(json.dumps({**json.loads(settings.read_text()), "fim_order": "spm"}))
    calls = loads(monkeypatch)
    first = Engine.load(path, dtype=dtype, wafer="mini")
    second = Engine.load(path, dtype=dtype, wafer="mini")
    assert len(calls) == 1 and len(list(cache.iterdir())) == 1
    ids = first.tokenizer.encode(PROMPT)
    assert second.tokenizer.encode(PROMPT) == ids
    for attribute in ("eos_token_ids", "bos_token_id", "chat_template", "special_tokens", "fim_order"):
        assert getattr(second.tokenizer, attribute) == getattr(first.tokenizer, attribute)
    assert second.tokenizer.fim_order == ("spm" if kind == "folder" else "psm")
    assert second.config == first.config
    np.testing.assert_array_equal(second.logits(ids), first.logits(ids))
    assert greedy(second) == greedy(first)


def test_the_mapped_tiles_are_aligned_and_tied_once(cache, tmp_path):
    path = tiny_gguf(tmp_path / "m.gguf")
    Engine.load(path, dtype="int8", wafer="mini")
    config, tokenizer, decoder, _ = tile_cache.load(path, spec("mini"), "int8")
    arrays = [decoder.embed, decoder.lm_head, decoder.final_norm, *decoder.layers]
    assert all(a.ctypes.data % 64 == 0 and a.flags.writeable and type(a) is np.ndarray for a in arrays)
    assert (decoder.lm_head is decoder.embed) == config.tie_word_embeddings


def test_a_changed_file_dtype_or_wafer_is_packed_again(cache, tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = loads(monkeypatch)
    Engine.load(path, dtype="int8", wafer="mini")
    Engine.load(path, dtype="fp32", wafer="mini")
    Engine.load(path, dtype="int8", wafer="wse3")
    assert len(calls) == 3 and len(list(cache.iterdir())) == 3
    tiny_gguf(path, kinds=(T.F32,))  # rewritten in place: another size and mtime
    os.utime(path, ns=(1, 1))
    Engine.load(path, dtype="int8", wafer="mini")
    assert len(calls) == 4 and len(list(cache.iterdir())) == 3  # the entry was replaced, not added


def test_damaged_entry_is_rebuilt_and_small_models_are_not_kept(cache, tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = loads(monkeypatch)
    Engine.load(path, dtype="int8", wafer="mini")
    [entry] = cache.iterdir()
    (entry / "layers.wqkv.npy").write_bytes(b"\x93NUMPY broken")
    Engine.load(path, dtype="int8", wafer="mini")
    assert len(calls) == 2 and np.load(entry / "layers.wqkv.npy").ndim == 5
    monkeypatch.setattr(tile_cache, "MIN_PARAMS", 10**9)
    other = tiny_gguf(tmp_path / "other.gguf")
    Engine.load(other, dtype="int8", wafer="mini")
    assert len(list(cache.iterdir())) == 1


def test_eviction(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(tile_cache, "MAX_ENTRIES", 2)
    paths = [tiny_gguf(tmp_path / f"m{i}.gguf") for i in range(3)]
    for path in paths:
        Engine.load(path, dtype="int8", wafer="mini")
    assert len(list(cache.iterdir())) == 2
    assert tile_cache.load(paths[0], spec("mini"), "int8") is None  # the least recently used went
    paths[1].unlink()  # a model that is gone loses its entry at the next write
    Engine.load(paths[0], dtype="int8", wafer="mini")
    assert sorted(e.name for e in cache.iterdir()) == sorted(
        tile_cache._entry(tile_cache.identity(p, spec("mini"), "int8")).name for p in (paths[0], paths[2]))


def searches(monkeypatch, threads=None):
    """Count the placement searches, wafer layout searches and decode-thread probes (in-process memo cleared);
    threads: what the probe finds (default: every thread the engine has, as an idle machine finds for a model of
    any size that is bandwidth-bound), or "measured"."""
    calls = {"place": 0, "layout": 0, "probe": 0}

    def counted(name, real):
        return lambda *a, **k: calls.__setitem__(name, calls[name] + 1) or real(*a, **k)

    found = Engine._fastest_decode_threads if threads == "measured" else \
        (lambda engine: engine.prefill_threads if threads is None else threads)
    monkeypatch.setattr(engine_module.layouts, "place", counted("place", engine_module.layouts.place))
    monkeypatch.setattr(cycles, "_candidates", counted("layout", cycles._candidates))
    monkeypatch.setattr(Engine, "_fastest_decode_threads", counted("probe", found))
    monkeypatch.setattr(engine_module, "_load_per_core", lambda: 0.0)  # an idle machine, whatever runs beside
    cycles.wafer_layout.cache_clear()
    cycles._FOUND.clear()
    return calls


@pytest.mark.parametrize("wafer", ["mini", "wse3"])
def test_placement_layout_and_decode_threads_are_kept_and_reused(cache, tmp_path, monkeypatch, wafer):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = searches(monkeypatch)
    first = Engine.load(path, wafer=wafer)
    assert calls == {"place": 1, "layout": 1, "probe": 1}
    assert (next(cache.iterdir()) / tile_cache.ENGINE_FILE).exists()
    cycles.wafer_layout.cache_clear()
    second = Engine.load(path, wafer=wafer)
    assert calls == {"place": 1, "layout": 1, "probe": 1}  # none of them again
    assert second.placement == first.placement and second.decode_threads == first.decode_threads
    assert second.free_rows == first.free_rows >= 1
    layout = cycles.wafer_layout(second.placement, cycles.DESIGN)
    assert (layout is second.placement) == (cycles.wafer_layout(first.placement, cycles.DESIGN) is first.placement)
    assert layout == cycles.wafer_layout(first.placement, cycles.DESIGN)
    assert (second._wafer_step_base, second._wafer_step_slope) == (first._wafer_step_base, first._wafer_step_slope)
    assert second._wafer_ttft_s(20) == first._wafer_ttft_s(20)


def test_a_decode_thread_probe_from_a_busy_machine_is_run_again_on_an_idle_one(cache, tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = searches(monkeypatch)
    load = {"now": 2.0}  # per core
    monkeypatch.setattr(engine_module, "_load_per_core", lambda: load["now"])
    Engine.load(path, wafer="mini")
    Engine.load(path, wafer="mini")  # as busy: the kept choice stands
    assert calls["probe"] == 1
    load["now"] = 0.1
    Engine.load(path, wafer="mini")  # idle now: measured again, and kept with the idle load
    Engine.load(path, wafer="mini")
    assert calls == {"place": 1, "layout": 1, "probe": 2}
    load["now"] = 3.0
    Engine.load(path, wafer="mini")  # busy again: an idle measurement is never replaced by a busy one
    assert calls["probe"] == 2


def test_a_probe_from_a_machine_half_busy_is_run_again_once_idle(cache, tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = searches(monkeypatch)
    load = {"now": 0.9}  # per core: one core of two busy, enough to change what two threads and free rows measure
    monkeypatch.setattr(engine_module, "_load_per_core", lambda: load["now"])
    Engine.load(path, wafer="mini")
    load["now"] = 0.2
    Engine.load(path, wafer="mini")
    Engine.load(path, wafer="mini")
    assert calls["probe"] == 2


def test_a_kept_choice_of_one_thread_is_probed_again_on_an_idle_machine(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    path = tiny_gguf(tmp_path / "m.gguf")
    found = {"threads": 1}  # a probe while another program held a core, the load average still low
    calls = searches(monkeypatch, threads=None)
    monkeypatch.setattr(Engine, "_fastest_decode_threads",
                        lambda engine: calls.__setitem__("probe", calls["probe"] + 1) or found["threads"])
    assert Engine.load(path, wafer="mini").decode_threads == 1
    assert Engine.load(path, wafer="mini").decode_threads == 1 and calls["probe"] == 2  # one thread: probed again
    found["threads"] = 2  # the other program has ended
    assert Engine.load(path, wafer="mini").decode_threads == 2 and calls["probe"] == 3
    assert Engine.load(path, wafer="mini").decode_threads == 2 and calls["probe"] == 3  # two threads: kept


def test_kept_search_results_are_found_again_when_their_key_changes(cache, tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "m.gguf")
    calls = searches(monkeypatch)
    Engine.load(path, wafer="mini", context=64)
    Engine.load(path, wafer="mini", context=32)  # another context: another placement, probed again
    assert calls == {"place": 2, "layout": 2, "probe": 2}
    cycles.wafer_layout.cache_clear()
    Engine.load(path, wafer="mini", context=64)  # both contexts are kept
    Engine.load(path, wafer="mini", context=32)
    assert calls == {"place": 2, "layout": 2, "probe": 2}
    monkeypatch.setattr(tile_cache, "ENGINE_SOURCES", tile_cache.ENGINE_SOURCES[:-1])  # as if the code changed
    cycles.wafer_layout.cache_clear()
    Engine.load(path, wafer="mini", context=64)
    assert calls == {"place": 3, "layout": 3, "probe": 3}
    (next(cache.iterdir()) / tile_cache.ENGINE_FILE).write_text("{broken")  # a damaged record: found again
    cycles.wafer_layout.cache_clear()
    Engine.load(path, wafer="mini", context=64)
    assert calls == {"place": 4, "layout": 4, "probe": 4}


@pytest.mark.parametrize("wafer", ["mini", "wse3"])
def test_a_placement_round_trips_through_its_state(wafer):
    config = load_checkpoint(BUILTIN).config
    placement = layouts.place(config, wafer, "int8", 256)
    for p in (placement, cycles.wafer_layout(placement)):
        state = json.loads(json.dumps(layouts.to_state(p)))
        again = layouts.from_state(state, config, spec(wafer))
        assert again == p and hash(again) == hash(p)


def test_tiles_packed_into_the_entry_files_are_the_tiles_packed_in_memory(cache, tmp_path):
    path = tiny_gguf(tmp_path / "m.gguf")
    checkpoint = load_checkpoint(path, dtype="int8", streamed=True)
    in_memory = pack(checkpoint.weights, checkpoint.config, spec("mini"), "int8")
    writer = tile_cache.begin(path, spec("mini"), "int8", checkpoint.config)
    in_place = pack(checkpoint.weights, checkpoint.config, spec("mini"), "int8", allocate=writer.allocate)
    assert set(writer.files) == {"layers.wqkv", "layers.wo", "layers.w_gate_up", "layers.w_down", "embed",
                                 "lm_head"}
    entry = tile_cache.save(path, spec("mini"), "int8", checkpoint.config, checkpoint.tokenizer, in_place, writer)
    _, _, mapped, _ = tile_cache.load(path, spec("mini"), "int8")
    for ours, theirs, kept in zip(in_place, in_memory, mapped):
        for a, b, c in zip(ours, theirs, kept) if isinstance(ours, tuple) else [(ours, theirs, kept)]:
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(c, b)
            assert a.dtype == b.dtype and (a.ndim < 4 or a.ctypes.data % 64 == 0)  # tiles aligned
    assert not any(p.name.startswith(".writing-") for p in entry.parent.iterdir())


def test_the_load_that_decides_a_probe_is_the_cores_work_now():
    """A core busy right now counts at once (the load average would take a minute to show it): one spinning
    thread, while the caller sleeps, is about one core's worth of the window."""
    import threading

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy = engine_module._load_per_core(0.2)
    finally:
        stop.set()
        spinner.join()
    assert busy >= 0.7 / os.cpu_count()
