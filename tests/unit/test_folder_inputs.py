"""Bad inputs to FolderDataset: every malformed entry is named by file and line (or skipped and
counted), images keep their scale and orientation, unknown caption words are reported once."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa_lab.config import make_config
from nuwa_lab.world import FolderDataset, ShapesWorld, TextTokenizer
from nuwa_lab.world.folders import rgb8

WORLD = make_config("smoke").world  # 16 px, 2 frames
CAPTION = "a red circle"  # words of the Shapes World's grammar: no unknown-word warning


def write_png(path: Path, colour=(255, 0, 0), size=(20, 12)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def write_index(folder: Path, lines: list) -> Path:
    """captions.jsonl from entries (dicts, JSON-dumped) and raw lines (str, or bytes as is)."""
    raw = [
        line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line))
        for line in lines
    ]
    data = b"\n".join(r if isinstance(r, bytes) else r.encode("utf-8") for r in raw) + b"\n"
    (folder / "captions.jsonl").write_bytes(data)
    return folder


def load_quietly(folder: Path, **kwargs) -> FolderDataset:
    """FolderDataset, failing the test on any warning (a valid folder loads without one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return FolderDataset(folder, WORLD, **kwargs)


def write_rgb16_png(path: Path, value: int, size=(8, 8)) -> Path:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL writes none)."""
    w, h = size
    rows = b"".join(b"\x00" + struct.pack(">H", value) * 3 * w for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    return path


# valid folders


def test_a_valid_folder_loads_as_before_without_warnings(tmp_path):
    write_png(tmp_path / "red.png", (255, 0, 0))
    (tmp_path / "clip").mkdir()
    for t in range(3):
        write_png(tmp_path / "clip" / f"{t:03d}.png", (0, 0, 80 * t))
    gif = [Image.new("RGB", (16, 16), (0, 40 * t, 0)) for t in range(3)]
    gif[0].save(tmp_path / "anim.gif", save_all=True, append_images=gif[1:], duration=100)
    write_index(
        tmp_path,
        [
            {"file": "red.png", "caption": CAPTION},
            "",  # blank lines are ignored
            {"file": "clip", "caption": "a blue square moves up"},
            {"file": "anim.gif", "caption": "a green circle, small, moving left"},
        ],
    )
    data = load_quietly(tmp_path)
    assert len(data) == 3 and data.entries == 3 and data.skipped == 0 and not data.unknown_words
    assert torch.allclose(data[0].pixels[:, 8, 8], torch.tensor([1.0, 0.0, 0.0]))
    assert data[1].pixels.shape == data[2].pixels.shape == (2, 3, 16, 16)
    assert data[1].pixels[1, 2].mean() > data[1].pixels[0, 2].mean()


def test_a_byte_order_mark_and_extra_keys_are_accepted(tmp_path):
    write_png(tmp_path / "a.png")
    entry = json.dumps({"file": "a.png", "caption": CAPTION, "source": "camera"})
    write_index(tmp_path, [b"\xef\xbb\xbf" + entry.encode()])
    assert load_quietly(tmp_path)[0].caption == CAPTION


# images: bit depth, modes, orientation


def test_a_16_bit_greyscale_png_keeps_its_scale(tmp_path):
    levels = np.full((12, 20), 32768, np.uint16)
    levels[:, 10:] = 65535  # left half mid-grey, right half white
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    pixels = load_quietly(write_index(tmp_path, [{"file": "deep.png", "caption": CAPTION}]))[0]
    assert pixels.pixels[:, :, :5].mean().item() == pytest.approx(0.5, abs=0.01)  # not 0.99
    assert pixels.pixels[:, :, 12:].mean().item() == pytest.approx(1.0, abs=0.01)


def test_a_16_bit_rgb_png_keeps_its_scale(tmp_path):
    write_rgb16_png(tmp_path / "deep.png", 32768)
    data = load_quietly(write_index(tmp_path, [{"file": "deep.png", "caption": CAPTION}]))
    assert data[0].pixels.mean().item() == pytest.approx(0.5, abs=0.01)


def test_32_bit_integer_images_read_as_16_bit_and_float_images_are_refused():
    mid = rgb8(Image.fromarray(np.full((4, 4), 32768, np.int32)), "x.tif")
    assert np.asarray(mid).mean() == pytest.approx(128, abs=1)
    with pytest.raises(Exception, match="'x.tif': a 32-bit float image .* no known scale"):
        rgb8(Image.fromarray(np.full((4, 4), 0.5, np.float32)), "'x.tif'")


def test_greyscale_palette_and_rgba_images_convert_as_before(tmp_path):
    Image.new("L", (16, 16), 128).save(tmp_path / "grey.png")
    Image.new("RGB", (16, 16), (0, 255, 0)).convert("P").save(tmp_path / "palette.png")
    Image.new("RGBA", (16, 16), (0, 0, 255, 100)).save(tmp_path / "alpha.png")
    names = ["grey.png", "palette.png", "alpha.png"]
    data = load_quietly(write_index(tmp_path, [{"file": n, "caption": CAPTION} for n in names]))
    assert torch.allclose(data[0].pixels, torch.full((3, 16, 16), 128 / 255))
    assert torch.allclose(data[1].pixels[:, 8, 8], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(data[2].pixels[:, 8, 8], torch.tensor([0.0, 0.0, 1.0]))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    image = Image.new("RGB", (20, 10), (255, 0, 0))  # landscape: left half blue, right half red
    image.paste((0, 0, 255), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a phone held upright
    image.save(tmp_path / f"phone{suffix}", exif=exif)
    image.save(tmp_path / f"plain{suffix}")
    entries = [{"file": f"{n}{suffix}", "caption": CAPTION} for n in ("phone", "plain")]
    phone, plain = load_quietly(write_index(tmp_path, entries))
    blue, red = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(phone.pixels[:, 2, 2], blue, atol=0.1)  # upright: blue on top
    assert torch.allclose(phone.pixels[:, 13, 2], red, atol=0.1)
    assert torch.allclose(plain.pixels[:, 13, 2], blue, atol=0.1)  # no tag: as stored


# the captions file, line by line


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    write_png(tmp_path / "a.png")
    write_index(
        tmp_path,
        [{"file": "a.png", "caption": CAPTION}, b'{"file": "a.png", "caption": "caf\xe9"}'],
    )
    with pytest.raises(ValueError, match=r"captions\.jsonl:2: not UTF-8 \(byte 0xe9 at byte 34\)"):
        FolderDataset(tmp_path, WORLD)


def test_non_utf8_lines_are_skipped_and_counted(tmp_path):
    write_png(tmp_path / "a.png")
    write_index(tmp_path, [{"file": "a.png", "caption": CAPTION}, b"\xff\xfe{}"])
    with pytest.warns(UserWarning, match="skipped 1 of 2 entries: 1 non-UTF-8 line "):
        data = FolderDataset(tmp_path, WORLD, on_error="skip")
    assert len(data) == 1 and data.errors[0][:3] == (2, None, "non-UTF-8 line")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"file": "a.png", "caption": "x"', "not valid JSON"),
        ('["a.png", "a red circle"]', "expected a JSON object .* got a list"),
        ('{"file": "a.png"}', "no 'caption'"),
        ('{"caption": "a red circle"}', "no 'file'"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, line, message):
    write_png(tmp_path / "a.png")
    write_index(tmp_path, [{"file": "a.png", "caption": CAPTION}, "", line])
    with pytest.raises(ValueError, match=rf"captions\.jsonl:3: {message}"):
        FolderDataset(tmp_path, WORLD)


@pytest.mark.parametrize(
    "file, got", [(None, "got null"), (3, r"got a number \(3\)"), ("", "got an empty string")]
)
def test_a_file_that_is_not_a_name_is_refused(tmp_path, file, got):
    write_index(tmp_path, [{"file": file, "caption": CAPTION}])
    with pytest.raises(ValueError, match=rf"captions\.jsonl:1: 'file' must name .*{got}"):
        FolderDataset(tmp_path, WORLD)


@pytest.mark.parametrize(
    "caption, got",
    [(None, "got null"), (["a", "b"], r'got a list \(\["a", "b"\]\)'), (7, "got a number")],
)
def test_captions_must_be_strings(tmp_path, caption, got):
    write_png(tmp_path / "a.png")
    write_index(tmp_path, [{"file": "a.png", "caption": caption}])
    with pytest.raises(ValueError, match=rf"captions\.jsonl:1: 'a.png': 'caption' must be .*{got}"):
        FolderDataset(tmp_path, WORLD)


def test_non_string_and_empty_captions_are_skipped_not_stringified(tmp_path):
    write_png(tmp_path / "a.png")
    entries = [{"file": "a.png", "caption": c} for c in (CAPTION, None, ["a", "b"], " ")]
    with pytest.warns(UserWarning, match="skipped 3 of 4 entries: 2 non-string captions, 1 empty"):
        data = FolderDataset(write_index(tmp_path, entries), WORLD, on_error="skip")
    assert [s.caption for s in data.samples] == [CAPTION]  # no 'None', no "['a', 'b']"
    assert [(e.line, e.file, e.reason) for e in data.errors] == [
        (2, "a.png", "non-string caption"),
        (3, "a.png", "non-string caption"),
        (4, "a.png", "empty caption"),
    ]


def test_a_missing_file_is_named_with_its_line(tmp_path):
    write_png(tmp_path / "a.png")
    entries = [{"file": "a.png", "caption": CAPTION}, {"file": "gone.png", "caption": CAPTION}]
    with pytest.raises(FileNotFoundError, match=r"captions\.jsonl:2: 'gone.png' not found in"):
        FolderDataset(write_index(tmp_path, entries), WORLD)


def test_an_unknown_file_type_and_an_unreadable_frame_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    write_index(tmp_path, [{"file": "notes.txt", "caption": CAPTION}])
    with pytest.raises(ValueError, match=r":1: 'notes.txt': unsupported file type '\.txt'"):
        FolderDataset(tmp_path, WORLD)
    (tmp_path / "clip").mkdir()
    write_png(tmp_path / "clip" / "000.png")
    (tmp_path / "clip" / "001.png").write_bytes(b"not a png")
    write_index(tmp_path, [{"file": "clip", "caption": CAPTION}])
    with pytest.raises(ValueError, match=r":1: 'clip/001.png': unreadable image"):
        FolderDataset(tmp_path, WORLD)


def test_a_10000_word_caption_is_reported_by_its_length_not_echoed(tmp_path):
    cfg = make_config("tiny")
    text = TextTokenizer.from_config(cfg.world, cfg.text)
    write_png(tmp_path / "a.png")
    write_index(tmp_path, [{"file": "a.png", "caption": " ".join(["circle"] * 10_000)}])
    with pytest.raises(ValueError, match=r"captions\.jsonl:1: .*10,000 words") as caught:
        FolderDataset(tmp_path, WORLD, text_tokenizer=text)
    assert "69,999 characters" in str(caught.value) and len(str(caught.value)) < 600
    write_index(tmp_path, [{"file": "a.png", "caption": c} for c in (CAPTION, "circle " * 10_000)])
    with pytest.warns(UserWarning, match="skipped 1 of 2 entries: 1 over-long caption "):
        data = FolderDataset(tmp_path, WORLD, text_tokenizer=text, on_error="skip")
    assert [s.caption for s in data.samples] == [CAPTION]


def test_a_long_file_name_is_cut_in_the_message(tmp_path):
    write_index(tmp_path, [{"file": "x" * 5_000 + ".png", "caption": CAPTION}])
    with pytest.raises(
        ValueError, match=r"cannot read it .*5,004 characters|5,004 characters.*cannot read it"
    ) as caught:
        FolderDataset(tmp_path, WORLD)
    assert len(str(caught.value)) < 500


def test_skip_counts_every_reason_in_one_warning(tmp_path):
    write_png(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "short").mkdir()
    write_png(tmp_path / "short" / "0.png")
    lines = [
        {"file": "a.png", "caption": CAPTION},
        {"file": "broken.png", "caption": CAPTION},
        {"file": "gone.png", "caption": CAPTION},
        {"file": None, "caption": CAPTION},
        {"file": "short", "caption": CAPTION},
        "{not json",
        {"file": "gone2.png", "caption": CAPTION},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = FolderDataset(write_index(tmp_path, lines), WORLD, on_error="skip")
    assert len(caught) == 1  # one summary, not one warning per entry
    assert str(caught[0].message).endswith(
        "skipped 6 of 7 entries: 2 missing files, 1 unreadable image, 1 bad file name, "
        "1 short video, 1 malformed line (each in .errors)"
    )
    assert len(data) == 1 and data.skipped == 6
    assert all(
        e.message.startswith(f"{tmp_path / 'captions.jsonl'}:{e.line}: ") for e in data.errors
    )


def test_a_folder_left_empty_raises(tmp_path):
    write_index(tmp_path, ["", "  "])
    with pytest.raises(ValueError, match="holds no entries"):
        FolderDataset(tmp_path, WORLD)
    write_index(tmp_path, [{"file": "gone.png", "caption": CAPTION}])
    with pytest.raises(ValueError, match=r"skipped 1 of 1 entries.*no entries are left"):
        FolderDataset(tmp_path, WORLD, on_error="skip")
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        FolderDataset(tmp_path, WORLD, on_error="ignore")


# unknown caption words


def test_unknown_words_are_counted_and_warned_once_with_how_to_add_them(tmp_path):
    write_png(tmp_path / "a.png")
    captions = ["a purple hexagon", "a purple circle", "a red circle!"]
    entries = [{"file": "a.png", "caption": c} for c in captions]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = FolderDataset(write_index(tmp_path, entries), WORLD)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "4 caption words (3 distinct)" in message and "'purple' (2), 'hexagon' (1)" in message
    assert "extra_words=list(data.unknown_words)" in message
    assert data.unknown_words == {"purple": 2, "hexagon": 1, "!": 1}
    cfg = make_config("smoke")
    text = TextTokenizer.from_config(cfg.world, cfg.text, extra_words=list(data.unknown_words))
    assert len(load_quietly(tmp_path, text_tokenizer=text)) == 3  # now all known: no warning


def test_shapes_world_captions_load_without_unknown_words(tmp_path):
    world = ShapesWorld(WORLD)
    batch = world.images(range(12))
    write_png(tmp_path / "a.png")
    data = load_quietly(
        write_index(tmp_path, [{"file": "a.png", "caption": c} for c in batch.captions])
    )
    assert [s.caption for s in data.samples] == batch.captions and not data.unknown_words
