"""The semantic cache's false-hit rate on the labelled pairs (tests/data/semantic_pairs.jsonl).

    python benchmarks/semantic_pairs.py

For each embedder (the simulator's bag of words through the OpenAI SDK, and the local
WordLlama model when installed) and threshold: how many near misses (pairs that ask
different things) would be served, without and with the guard, and how many
paraphrases (pairs that ask the same thing) would be.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from actors.cache import LocalEmbedder, OpenAIEmbedder, differences  # noqa: E402
from actors.providers.simulator import Simulator  # noqa: E402

LINES = (ROOT / "tests/data/semantic_pairs.jsonl").read_text().splitlines()
PAIRS = [json.loads(line) for line in LINES if line.strip()]


def report(name: str, vectors: np.ndarray) -> None:
    texts = len(PAIRS)
    wrong = sum(not p["same"] for p in PAIRS)
    right = texts - wrong
    print(f"\n{name}: {right} paraphrases, {wrong} near misses")
    print("threshold  near misses served (no guard / guard)  paraphrases served (no guard / guard)")
    for threshold in (0.8, 0.85, 0.9, 0.95):
        counts = {"wrong": [0, 0], "right": [0, 0]}
        for index, pair in enumerate(PAIRS):
            similarity = float(vectors[2 * index] @ vectors[2 * index + 1])
            close = similarity >= threshold
            guarded = close and not differences(pair["asked"], pair["cached"])
            row = counts["right" if pair["same"] else "wrong"]
            row[0] += close
            row[1] += guarded
        w, r = counts["wrong"], counts["right"]
        share = w[1] / wrong
        print(f"{threshold:9.2f}  {w[0]:3d} / {w[1]:3d} of {wrong} ({share:.1%} with the guard)"
              f"          {r[0]:3d} / {r[1]:3d} of {right}")  # fmt: skip


async def main() -> None:
    texts = [t for p in PAIRS for t in (p["cached"], p["asked"])]
    async with Simulator() as simulator:
        embedder = OpenAIEmbedder("sk-bench", f"{simulator.url}/v1", model="text-embedding-3-small",
                                  dimensions=256, timeout_s=30)  # fmt: skip
        vectors = await embedder.embed(texts)
        report("simulator (bag of words, 256 dims, via the OpenAI SDK)", vectors)
        await embedder.close()
    if importlib.util.find_spec("wordllama") is not None:
        report("local (WordLlama l2_supercat, 256 dims)", await LocalEmbedder().embed(texts))
    else:
        print("\nlocal: not installed (pip install -e '.[local-embeddings]')")


if __name__ == "__main__":
    asyncio.run(main())
