"""Pure, deterministic pieces of the ActionBench annotation builders (standard library only).

* action antonyms: hand mapping tables first, then WordNet verb antonyms when nltk and its WordNet
  data are installed (offline, e.g. Debian's ``wordnet-base``), then a particle table (up <-> down);
* object shuffling: each placeholder replaced by a random other object of a taxonomy;
* the state-change saliency rule of the original.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Callable, Optional

TABLES = Path(__file__).parent / "tables"
WORD = re.compile(r"[A-Za-z]+")


def load_table(name: str, folder: Path = TABLES):
    return json.loads((folder / name).read_text())


def wordnet_verb_antonym() -> Optional[Callable[[str], Optional[str]]]:
    """A lookup word -> antonym (same -ing/-s/-ed ending) through WordNet, or None without nltk data."""
    try:
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
    except (ImportError, LookupError, OSError):
        return None

    def lookup(word: str) -> Optional[str]:
        lemma = wn.morphy(word, wn.VERB)
        if lemma is None:
            return None
        for synset in wn.synsets(lemma, pos=wn.VERB):  # first synset that has an antonym, as the original
            for lem in synset.lemmas():
                if lem.antonyms():
                    return inflect_like(lem.antonyms()[0].name().replace("_", " "), word, lemma)
        return None

    return lookup


def inflect_like(base: str, surface: str, lemma: str) -> str:
    """Give ``base`` (a lemma, possibly multi-word) the ending that ``surface`` adds to ``lemma``."""
    head, _, rest = base.partition(" ")
    if surface == lemma:
        out = head
    elif surface.endswith("ing"):
        out = (head[:-1] if head.endswith("e") and not head.endswith("ee") else head) + "ing"
    elif surface.endswith("ed"):
        out = head + ("d" if head.endswith("e") else "ed")
    elif surface.endswith("s"):
        out = head + ("es" if head.endswith(("s", "sh", "ch", "x")) else "s")
    else:
        out = head
    return f"{out} {rest}".strip()


def _match_case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def action_antonym(
    caption: str,
    verbs: dict[str, str],
    particles: dict[str, str],
    ignored: set[str],
    wordnet: Optional[Callable[[str], Optional[str]]] = None,
) -> Optional[str]:
    """The caption with its action words replaced by antonyms, or None when nothing changed.

    Words are replaced one by one (no substring replacement, unlike the original's ``str.replace``).
    """
    changed = False

    def swap(match: re.Match) -> str:
        nonlocal changed
        word = match.group(0)
        if word in ignored:
            return word
        low = word.lower()
        new = verbs.get(low) or particles.get(low) or (wordnet(low) if wordnet else None)
        if new is None or new == low:
            return word
        changed = True
        return _match_case(new, word)

    out = WORD.sub(swap, caption)
    return out if changed else None


def shuffle_objects(label: str, placeholders: list[str], taxonomy: dict[str, list[str]], rng: random.Random) -> str:
    """Lower-cased label with the first occurrence of each placeholder replaced by another object."""
    objects = sorted({o for group in taxonomy.values() for o in group})
    out = label.lower()
    for ph in placeholders:
        choices = [o for o in objects if o != ph.lower()]
        out = out.replace(ph.lower(), rng.choice(choices), 1)
    return out


def saliency_keep(start_text: list[float], end_text: list[float], start_end: float,
                  min_text_diff: float = 0.003, max_start_end: float = 0.95) -> bool:
    """The original rule: the text matches the start and the end differently, and they look different."""
    diff = abs(sum(start_text) / len(start_text) - sum(end_text) / len(end_text))
    return diff > min_text_diff and start_end < max_start_end
