"""qerr.Tokenizer: the C tokenizer through ctypes. The golden ids of Hugging
Face's tokenizers.js need the shared data directory; the rest runs on a small
tokenizer.json written here."""
import json

import numpy as np
import pytest

import qerr
from conftest import requires_model_api, shared_data

DATA = shared_data()
pytestmark = [requires_model_api()]
needs_data = pytest.mark.skipif(DATA is None, reason="shared data not found (set QERR_SHARED_DATA)")

TOY = {"added_tokens": [{"id": 3, "content": "<s>", "special": True}],
       "post_processor": {"type": "TemplateProcessing",
                          "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                     {"Sequence": {"id": "A", "type_id": 0}}],
                          "special_tokens": {"<s>": {"id": "<s>", "ids": [3]}}},
       "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, " ": 4},
                 "merges": ["a b"]}}


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps(TOY))
    with qerr.Tokenizer(tmp_path) as t:
        yield t


def test_toy_encode_decode(toy, tmp_path):
    assert toy.vocab_size == 5 and len(toy) == 5
    assert toy.bos_id == 3 and toy.eos_id is None
    ids = toy.encode("ab ba")
    assert ids.dtype == np.uint32
    assert ids.tolist() == [3, 2, 4, 1, 0]
    assert toy.encode("ab ba", add_special=False).tolist() == [2, 4, 1, 0]
    assert toy.encode("<s>a").tolist() == [3, 3, 0]
    assert toy.encode("<s>a", add_special=False, parse_special=False).tolist() == [0]
    assert toy.decode(ids) == "<s>ab ba"
    assert toy.decode(ids, skip_special=True) == "ab ba"
    assert toy.decode_bytes([2]) == b"ab"
    assert toy.token_text(3) == (b"<s>", True)
    assert toy.token_text(2) == (b"ab", False)
    with pytest.raises(IndexError):
        toy.token_text(5)
    with pytest.raises(qerr.QerrError) as e:
        toy.decode([7])
    assert e.value.code == qerr.E_RANGE
    (tmp_path / "d.jsonl").write_text('{"text": "ab"}\n{"text": "b"}\n')
    ids, nbytes = toy.encode_file(tmp_path / "d.jsonl")
    assert ids.tolist() == [3, 2, 3, 1] and nbytes == 3
    (tmp_path / "bad.jsonl").write_text('{"text": "ab"}\n{"body": "b"}\n')
    with pytest.raises(qerr.QerrError) as e:
        toy.encode_file(tmp_path / "bad.jsonl")
    assert e.value.code == qerr.E_FORMAT and "line 2" in str(e.value)


def test_refused_by_name(tmp_path):
    bad = dict(TOY, model={"type": "WordPiece", "vocab": {"a": 0}})
    (tmp_path / "tokenizer.json").write_text(json.dumps(bad))
    with pytest.raises(qerr.QerrError) as e:
        qerr.Tokenizer(tmp_path / "tokenizer.json")
    assert e.value.code == qerr.E_UNSUPPORTED and "WordPiece" in str(e.value)
    with pytest.raises(qerr.QerrError) as e:
        qerr.Tokenizer(tmp_path / "absent")
    assert e.value.code in (qerr.E_IO, qerr.E_NOT_FOUND)


def test_closed(toy):
    toy.close()
    with pytest.raises(qerr.QerrError):
        toy.encode("a")


@needs_data
@pytest.mark.parametrize("name", ["llama2", "llama3", "qwen3"])
def test_golden_wikitext(name):
    text = (DATA / "text" / "wikitext-2-raw-test.txt").read_bytes()
    want = np.fromfile(DATA / "tokenizers" / name / "wikitext-2-raw-test.u32", dtype="<u4")
    with qerr.Tokenizer(DATA / "tokenizers" / name) as t:
        ids = t.encode(text, add_special=False)
        np.testing.assert_array_equal(ids, want)
        assert t.decode_bytes(ids) == text


@needs_data
def test_stories260k_jsonl(tmp_path):
    lines = (DATA / "text" / "tinystories_valid_sample.txt").read_text(encoding="utf-8")
    path = tmp_path / "stories.jsonl"
    path.write_text("".join(json.dumps({"text": l}) + "\n" for l in lines.split("\n")))
    with qerr.Tokenizer(DATA / "stories260k" / "tok512.bin") as t:
        ids, nbytes = t.encode_file(path)
    np.testing.assert_array_equal(ids, qerr.read_tokens(DATA / "stories260k" / "eval.u32"))
    assert nbytes == len(lines.replace("\n", "").encode("utf-8"))


@needs_data
def test_invalid_utf8_as_replacement():
    with qerr.Tokenizer(DATA / "tokenizers" / "llama3") as t:
        assert t.encode(b"a\xffb", add_special=False).tolist() == \
            t.encode("a\ufffdb", add_special=False).tolist()
        assert t.decode(t.encode(b"a\xffb")) == "a\ufffdb"
