"""Reference outputs of the real MSD_musicnn TensorFlow model, for coaudio's PyTorch port.

Run once, in a throwaway virtual environment (TensorFlow is NOT a coaudio dependency)::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 librosa soundfile
    /tmp/tfenv/bin/python tools/musicnn_reference.py [WHEEL] [--out tests/fixtures/musicnn_reference.npz]

WHEEL defaults to ``~/.cache/coaudio-test-downloads/musicnn-0.1.0-py3-none-any.whl`` (what
``tests/downloads.py`` keeps). The script does not import coaudio.

What it does:

1. Makes three deterministic synthetic clips (numpy, fixed seed; no recorded audio), 16 kHz,
   rounded to float16-representable values so the fixture can store them losslessly as
   float16: tonal chords, a percussive pattern, and a loud square-wave clip whose mel power
   exceeds float16's ``65504 / 10000`` (the numpy >= 2 overflow trap).
2. Computes musicnn's own front end as ``musicnn.extractor.batch_data`` does: librosa
   ``melspectrogram(sr=16000, n_fft=512, hop_length=256, n_mels=96)`` (center=True, so
   librosa's zero padding), transposed to (time, 96), cast to float16, then
   ``log10(10000 * x + 1)`` computed in float32 (what numpy < 2 did; numpy >= 2 would keep
   float16 and overflow to inf).
3. Cuts 187-frame patches at frames 0, 16 and 32 of every clip.
4. Imports the MSD_musicnn training graph from its ``.meta`` (``_output_shapes`` attributes
   deleted: TF 1.12 left stale ones that newer TF rejects), restores the checkpoint, and runs
   the patches with ``is_training = False``.
5. Writes the compressed ``.npz`` (about 0.6 MB):

   - ``audio_<i>``: clip i, float16 (exactly the float32 samples that were used);
   - ``mel16_<i>``: its float16 mel power and ``mel_<i>`` its float32 log-mel, both (F, 96),
     F = 1 + len // 256 (librosa's frames, right-padded ones included);
   - ``patch_clip``, ``patch_start``: patch p is ``mel_<clip>[start : start + 187]``
     (not stored twice, to keep the file small);
   - TF's ``logits``, ``tags``, ``penultimate``, ``max_pool``, ``mean_pool``, one row per patch;
   - ``clip_names``, and ``versions`` (a JSON string: TF, librosa, numpy, Python, platform).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SR = 16000
CLIP_SECONDS = 3.5
PATCH_FRAMES = 187
PATCH_STARTS = (0, 16, 32)
SEED = 20190801
OUTPUTS = {  # fixture key -> TF tensor in the MSD_musicnn training graph
    "logits": "model/dense_1/BiasAdd:0",
    "tags": "model/Sigmoid:0",
    "penultimate": "model/batch_normalization_10/batchnorm/add_1:0",
    "max_pool": "model/Max:0",
    "mean_pool": "model/moments/Squeeze:0",
}
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WHEEL = Path.home() / ".cache" / "coaudio-test-downloads" / "musicnn-0.1.0-py3-none-any.whl"


def _as_float16_exact(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1.0, 1.0).astype(np.float16).astype(np.float32)


def make_clips() -> dict[str, np.ndarray]:
    """Three synthetic clips, float32 at 16 kHz, every sample exactly representable in float16."""
    rng = np.random.default_rng(SEED)
    n = int(CLIP_SECONDS * SR)
    t = np.arange(n) / SR
    # Chords: three harmonic voices whose notes change every 0.5 s, a little noise.
    chord = np.zeros(n)
    for voice, base in enumerate((220.0, 277.2, 329.6)):
        notes = base * 2 ** (rng.integers(0, 12, size=int(CLIP_SECONDS * 2) + 1) / 12)
        freq = notes[(t * 2).astype(int)]
        phase = 2 * np.pi * np.cumsum(freq) / SR
        for harmonic in range(1, 6):
            chord += 0.08 / harmonic * np.sin(harmonic * phase + voice)
    chord += 0.01 * rng.standard_normal(n)
    # Percussion: decaying noise bursts (hats), thumps (kick), clicks, over a bass line.
    drums = 0.15 * np.sin(2 * np.pi * 55.0 * t * (1 + 0.5 * (t % 1.0 > 0.5)))
    for beat in np.arange(0, CLIP_SECONDS, 0.25):
        start = int(beat * SR)
        length = min(2000, n - start)
        decay = np.exp(-np.arange(length) / 300.0)
        drums[start : start + length] += 0.3 * rng.standard_normal(length) * decay
        if int(beat * 4) % 4 == 0:
            thump = np.sin(2 * np.pi * 60.0 * np.arange(length) / SR * (1 + decay))
            drums[start : start + length] += 0.6 * thump * decay
    drums[rng.integers(0, n, size=40)] += rng.choice([-0.9, 0.9], size=40)
    # Loud: near full-scale square waves and a sweep; mel power far above 6.55.
    square = 0.95 * np.sign(np.sin(2 * np.pi * 110.0 * t) + 1e-9)
    sweep = 0.9 * np.sin(2 * np.pi * (200.0 * t + 600.0 * t**2))
    loud = np.where(t % 1.0 < 0.5, square, sweep) + 0.02 * rng.standard_normal(n)
    return {name: _as_float16_exact(x) for name, x in (("chords", chord), ("drums", drums), ("loud", loud))}


def musicnn_front_end(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mel16, log_mel)``, both (F, 96): musicnn's extractor, with the log in float32."""
    import librosa

    power = librosa.feature.melspectrogram(y=audio, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    mel16 = power.astype(np.float16)
    log_mel = np.log10(10000 * mel16.astype(np.float32) + 1)  # numpy < 2's float32 promotion
    return mel16, log_mel.astype(np.float32)


def extract_model(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith("musicnn/MSD_musicnn/"):
                archive.extract(member, into)
    return into / "musicnn" / "MSD_musicnn"


def msd_labels(wheel: Path) -> list[str]:
    """``MSD_LABELS`` from the wheel's ``configuration.py`` (read, not imported)."""
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("musicnn/configuration.py").decode()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MSD_LABELS":
            return ast.literal_eval(node.value)
    raise ValueError(f"{wheel}: no MSD_LABELS in musicnn/configuration.py")


def run_tf(model_dir: Path, patches: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((model_dir / ".meta").read_bytes())
    for node in meta.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        saver = tf.compat.v1.train.import_meta_graph(meta)
        saver.restore(session, str(model_dir) + "/")
        feed = {"model/Placeholder:0": patches, "model/Placeholder_2:0": False}
        values = session.run(list(OUTPUTS.values()), feed_dict=feed)
    return {key: np.asarray(v, np.float32).reshape(len(patches), -1) for key, v in zip(OUTPUTS, values)}


def versions() -> str:
    import librosa
    import tensorflow as tf

    return json.dumps(
        {
            "tensorflow": tf.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path, default=DEFAULT_WHEEL)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "musicnn_reference.npz")
    args = parser.parse_args()
    clips = make_clips()
    arrays: dict[str, np.ndarray] = {"clip_names": np.array(list(clips))}
    patches, patch_clip, patch_start = [], [], []
    for i, (name, audio) in enumerate(clips.items()):
        mel16, log_mel = musicnn_front_end(audio)
        overflow = int((mel16 > np.finfo(np.float16).max / 10000).sum())
        print(f"{name}: {len(audio)} samples, {len(log_mel)} frames, {overflow} bins over the float16 trap")
        arrays.update({f"audio_{i}": audio.astype(np.float16), f"mel16_{i}": mel16, f"mel_{i}": log_mel})
        for start in PATCH_STARTS:
            patches.append(log_mel[start : start + PATCH_FRAMES])
            patch_clip.append(i)
            patch_start.append(start)
    assert (arrays["mel16_2"] > np.finfo(np.float16).max / 10000).any(), "the loud clip must trip the trap"
    with tempfile.TemporaryDirectory() as tmp:
        outputs = run_tf(extract_model(args.wheel, Path(tmp)), np.stack(patches))
    arrays.update(outputs)
    arrays.update(patch_clip=np.array(patch_clip), patch_start=np.array(patch_start))
    arrays["versions"] = np.array(versions())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    labels = msd_labels(args.wheel)
    for i, name in enumerate(clips):
        tags = outputs["tags"][len(PATCH_STARTS) * i]
        print(name, ", ".join(f"{labels[j]} {tags[j]:.3f}" for j in np.argsort(-tags)[:3]))


if __name__ == "__main__":
    main()
