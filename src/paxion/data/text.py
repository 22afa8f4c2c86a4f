"""Caption processors of the original (``minimum_text``, ``vl_dynamic_ego4d_text``), registered as processors."""

from __future__ import annotations

import re
from typing import Callable

from paxion.registry import registry

TextProcessor = Callable[[str], str]

_PUNCT = re.compile(r"[.!\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def clean_ego4d_caption(caption: str, max_words: int = 50) -> str:
    """EgoClip narration -> plain lower-case text ("#C C picks up" -> "c picks up")."""
    caption = re.sub(r"\. #unsure", "", caption.lower())
    caption = re.sub(r"the #unsure", "something", caption)
    caption = re.sub(r"a #unsure", "something", caption)
    caption = re.sub(r" #unsure", " something", caption)
    caption = re.sub(r"#([a-z]) ", "", caption)
    caption = re.sub(r"# ([a-z]) ", "", caption)
    caption = _SPACES.sub(" ", _PUNCT.sub(" ", caption)).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


@registry.register("processor", "minimum_text")
def minimum_text(prompt: str = "", max_words: int = 50) -> TextProcessor:
    """Only prepends ``prompt``; ``max_words`` is accepted and unused, as in the original."""
    del max_words
    return lambda caption: prompt + caption


@registry.register("processor", "ego4d_text")
def ego4d_text(prompt: str = "", max_words: int = 50) -> TextProcessor:
    return lambda caption: prompt + clean_ego4d_caption(caption, max_words)


def build_text_processor(name: str, prompt: str = "", max_words: int = 50) -> TextProcessor:
    return registry.get("processor", name)(prompt=prompt, max_words=max_words)
