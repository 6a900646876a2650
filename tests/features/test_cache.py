"""The feature cache: a cache path that cannot be a folder is one error before any work, and a
fully cached set is read in process, without starting worker processes."""

from __future__ import annotations

import wave
from concurrent.futures import Future
from contextlib import contextmanager

import numpy as np
import pytest

from coaudio.features import cache as cache_module
from coaudio.features.cache import CacheError, FeatureConfig, check_cache, extract


def _wav(path, seconds=1.2, rate=16000, seed=0):
    samples = (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 3000).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    return [_wav(folder / f"clip{i}.wav", seed=i) for i in range(3)]


def test_a_cache_that_is_a_file_or_cannot_be_made_is_one_clear_error(tmp_path, files):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(CacheError, match=r"^--cache .*afile: not a folder$"):
        check_cache(afile, "--cache")
    with pytest.raises(CacheError, match=r"cannot create it \(.*afile is not a folder\)"):
        check_cache(afile / "sub", "--cache", create=False)
    with pytest.raises(CacheError, match="cannot create it"):
        check_cache(afile / "sub")
    assert check_cache(tmp_path / "new" / "cache", create=False) == tmp_path / "new" / "cache"
    assert not (tmp_path / "new").exists()  # only checked
    with pytest.raises(CacheError, match="not a folder"):  # not a failed outcome per file
        extract(files, afile, FeatureConfig(), jobs=1, bar=False)


class _InProcessPool:
    """Stands in for the worker pool: runs each task at once, records what was sent."""

    def __init__(self, sent):
        self.sent = sent

    def submit_all(self, fn, *iterables):
        futures = []
        for args in zip(*iterables):
            self.sent.append(args[0])
            future = Future()
            future.set_result(fn(*args))
            futures.append(future)
        return futures


def test_workers_start_only_for_files_that_need_extracting(tmp_path, files, monkeypatch):
    cache, config = tmp_path / "cache", FeatureConfig()
    started, sent = [], []

    @contextmanager
    def pool(jobs):
        started.append(jobs)
        yield _InProcessPool(sent)

    monkeypatch.setattr(cache_module, "worker_pool", pool)
    first = extract(files[:1], cache, config, jobs=2, bar=False)
    assert [o.status for o in first.outcomes] == ["extracted"] and not started  # one file: in process

    again = extract(files, cache, config, jobs=2, bar=False)  # two need work: workers, for those two only
    assert started == [2] and sent == files[1:]
    assert [o.path for o in again.outcomes] == [str(f) for f in files]  # in the order asked
    assert [o.status for o in again.outcomes] == ["cached", "extracted", "extracted"]

    cached = extract(files, cache, config, jobs=2, bar=False)  # all cached: no worker starts
    assert started == [2] and [o.status for o in cached.outcomes] == ["cached"] * 3
