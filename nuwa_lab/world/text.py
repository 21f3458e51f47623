"""Word-level text tokenizer for captions (the text condition of NÜWA's encoder, §3.2).

NÜWA encodes a caption with a BPE tokenizer into a (1, 1, L) grid; the Shapes World's grammar has a
few dozen words, so a word-level vocabulary built from the grammar is exact and readable. A caption
becomes `<bos> w_1 ... w_n <eos> <pad> ...` of fixed length L = cfg.text.max_length.

| symbol | code | meaning |
|---|---|---|
| L | `max_length` | tokens per caption, <bos> and <eos> included |
| V | `vocab_size` | 5 specials + the grammar's words |
| "none" condition | `none()` | `<bos> <none> <eos>`: the constant input of unconditional tasks |

Specials: `<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, `<none>`=4. Words outside the vocabulary map
to `<unk>` and are counted in `unknown_count` (a sign that real captions need a bigger vocabulary:
`from_config(..., extra_words=...)`). Errors quote a caption through `shorten`, never in full.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nuwa_lab.config import TextConfig, WorldConfig
from nuwa_lab.world.captions import max_caption_tokens, vocabulary, words

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<none>")
PAD, BOS, EOS, UNK, NONE = range(len(SPECIALS))
ECHO_LIMIT = 80  # characters of a caption (or file name) an error message may quote


def shorten(text: str, limit: int = ECHO_LIMIT, *, quote: bool = True) -> str:
    """`text` for an error message: quoted (repr) and, when longer than `limit`, cut there with its
    length noted, so a 10,000-word caption gives a one-line message."""
    shown = repr(text) if quote else text
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(text):,} characters)"


class TextTokenizer:
    r"""Caption -> ids (L,): $[\mathrm{bos}, w_1 \dots w_n, \mathrm{eos}, \mathrm{pad}, ...]$.

    Built from the grammar's vocabulary (`from_config`) or any word list (`words=`).
    """

    def __init__(self, *, words: Sequence[str], max_length: int):
        if max_length < 3:
            raise ValueError(f"max_length={max_length}; need >= 3 (<bos>, a word, <eos>)")
        extra = [w for w in dict.fromkeys(words) if w not in SPECIALS]
        self.itos: list[str] = list(SPECIALS) + extra
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.max_length = max_length
        self.unknown_count = 0  # words mapped to <unk> since construction
        self.unknown_words: dict[str, int] = {}

    @classmethod
    def from_config(
        cls, world_cfg: WorldConfig, text_cfg: TextConfig, *, extra_words: Sequence[str] = ()
    ) -> TextTokenizer:
        """The tokenizer of a world's grammar (plus `extra_words`, e.g. from real captions).

        Raises if text.max_length cannot hold the world's longest caption."""
        longest = max_caption_tokens(world_cfg) + 2
        if text_cfg.max_length < longest:
            raise ValueError(
                f"text.max_length={text_cfg.max_length} but captions of this world need up to "
                f"{longest} tokens (<bos>, <eos> included; max_objects={world_cfg.max_objects}); "
                f"set text.max_length >= {longest}"
            )
        return cls(
            words=list(vocabulary(world_cfg)) + list(extra_words), max_length=text_cfg.max_length
        )

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, caption: str, truncate: bool = False) -> torch.Tensor:
        """LongTensor (max_length,); a caption too long raises unless `truncate=True`."""
        if not isinstance(caption, str):
            shown = shorten(repr(caption), quote=False)
            raise TypeError(f"a caption must be a string, got {shown} ({type(caption).__name__})")
        tokens = words(caption)
        room = self.max_length - 2
        if len(tokens) > room:
            if not truncate:
                raise ValueError(
                    f"caption has {len(tokens):,} words ({len(caption):,} characters) but "
                    f"max_length={self.max_length} holds {room} (plus <bos>, <eos>): "
                    f"{shorten(caption)}; pass truncate=True or raise text.max_length"
                )
            tokens = tokens[:room]
        ids = [BOS]
        for w in tokens:
            if w in self.stoi:
                ids.append(self.stoi[w])
            else:
                ids.append(UNK)
                self.unknown_count += 1
                self.unknown_words[w] = self.unknown_words.get(w, 0) + 1
        ids.append(EOS)
        ids += [PAD] * (self.max_length - len(ids))
        return torch.tensor(ids, dtype=torch.int64)

    def encode_batch(self, captions: Sequence[str], truncate: bool = False) -> torch.Tensor:
        """LongTensor (b, max_length)."""
        if isinstance(captions, str):
            raise TypeError("encode_batch takes a list of captions; use encode for one caption")
        return torch.stack([self.encode(c, truncate=truncate) for c in captions])

    def none(self) -> torch.Tensor:
        """The constant "no condition" sequence `<bos> <none> <eos> <pad>...` (max_length,)."""
        ids = [BOS, NONE, EOS] + [PAD] * (self.max_length - 3)
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Words between <bos> and the first <eos>, joined (punctuation attached to its word)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence (L,), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            if not 0 <= i < len(self.itos):
                raise ValueError(f"token id {i} outside the vocabulary of {self.vocab_size}")
            out.append(self.itos[i])
        text = " ".join(out)
        return text.replace(" ,", ",").replace(" .", ".")

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        return [self.decode(row) for row in ids]
