#!/usr/bin/env python
"""An offline English corpus from Debian's WordNet (`apt-get install wordnet-base`).

    python benchmarks/make_wordnet_corpus.py --output benchmarks/work/wordnet

Every synset becomes a short document: one line "lemma, lemma: gloss." and one line per
example sentence, documents separated by a blank line (the layout
`sparse_transfer.upstream` reads consecutive segments from). Synsets stay in WordNet's
file order, so neighbouring documents share a topic (the lexicographer files group them).
Every 50th document goes to `heldout.txt` instead of `train.txt`: the sentences that
embedding fidelity is measured on are never trained on.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
HELDOUT_EVERY = 50


def synset_documents(data_file: Path):
    """Yield [definition line, example, ...] per synset of one `data.*` file."""
    for line in data_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" ") or "|" not in line:  # licence header
            continue
        fields, gloss = line.split("|", 1)
        parts = fields.split()
        word_count = int(parts[3], 16)
        lemmas = [parts[4 + 2 * i].replace("_", " ") for i in range(word_count)]
        lemmas = [re.sub(r"\(.*\)$", "", lemma) for lemma in lemmas]  # adjective markers like (a)
        pieces = [piece.strip() for piece in gloss.strip().split(";") if piece.strip()]
        definitions = [p for p in pieces if not p.startswith('"')]
        examples = [p.strip('"') for p in pieces if p.startswith('"')]
        if not definitions:
            continue
        document = [f"{', '.join(dict.fromkeys(lemmas))}: {'; '.join(definitions)}."]
        document += [e[0].upper() + e[1:] + ("" if e[-1] in ".!?" else ".") for e in examples if e]
        yield document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/work/wordnet", help="directory for train.txt and heldout.txt")
    parser.add_argument("--wordnet_dir", default=str(WORDNET_DIR))
    args = parser.parse_args()
    source = Path(args.wordnet_dir)
    if not (source / "data.noun").is_file():
        raise SystemExit(f"error: {source}/data.noun not found; install it with `apt-get install wordnet-base`")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    train, heldout = [], []
    for pos in PARTS_OF_SPEECH:
        for index, document in enumerate(synset_documents(source / f"data.{pos}")):
            (heldout if index % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append("\n".join(document))
    (out / "train.txt").write_text("\n\n".join(train) + "\n", encoding="utf-8")
    (out / "heldout.txt").write_text("\n\n".join(heldout) + "\n", encoding="utf-8")
    lines = sum(d.count("\n") + 1 for d in train)
    print(f"{len(train)} documents ({lines} lines) -> {out / 'train.txt'}; {len(heldout)} held out -> {out / 'heldout.txt'}")


if __name__ == "__main__":
    main()
