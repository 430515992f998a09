"""FluoroSeg category table and plain-word descriptions."""

import re

import pytest

from fluorojax.fluoroseg import categories as cats
from fluorojax.fluoroseg import text

# Truth from the FluoroSeg format document (ids of the base classes and the reduced merges).
_FORMAT_DOC_MERGES = {
    "kidney": {2, 3},
    "lung": set(range(10, 15)),
    "vertebrae_L": set(range(26, 32)),
    "vertebrae_T": set(range(32, 44)),
    "vertebrae_C": set(range(44, 51)),
    "ribs": set(range(92, 116)),
    "pelvis": {77, 78},
    "gluteus": set(range(80, 86)),
    "tool": {1000},
}
_ORDINAL_WORDS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
]


def test_category_table_matches_the_format():
    base = [c for c in cats.CATEGORIES if c.cutoff is None]
    assert [c.id for c in base] == list(range(1, 118)) + list(range(301, 312)) + [1000]
    assert cats.get_category(1).name == "spleen" and cats.get_category(2).name == "kidney_right"
    assert cats.get_category(25).name == "sacrum" and cats.get_category(26).name == "vertebrae_S1"
    assert cats.get_category(50).name == "vertebrae_C1" and cats.get_category(91).name == "skull"
    assert cats.get_category(1000).supercategory == "tool"
    assert cats.NUM_REDUCED_CLASSES == 57 == len(cats.REDUCED_NAMES)
    for name, ids in _FORMAT_DOC_MERGES.items():
        index = cats.REDUCED_NAMES.index(name)
        assert set(cats.reduced_members(index)) == ids
        assert all(cats.reduced_index(i) == index for i in ids)
    # every reduced class has members; the unreduced classes are dropped
    assert all(cats.reduced_members(i) for i in range(57))
    assert {c.id for c in base if c.reduced_index is None} == {23, 24, 65, 66, 67, 68}


def test_cutoff_ids_follow_fluoroseg_numbering():
    base = [c for c in cats.CATEGORIES if c.cutoff is None]
    anatomical = [c for c in base if c.supercategory != "tool"]
    cutoffs = [c for c in cats.CATEGORIES if c.cutoff is not None]
    assert len(cutoffs) == 2 * len(anatomical) == 256
    # id = 10000 + position in the base table, then + len(base) for the superior end
    for position, c in enumerate(base):
        if c.supercategory == "tool":
            with pytest.raises(ValueError, match="no cut-off"):
                cats.cutoff_category_id(c.id, "I")
            continue
        for k, end in enumerate("IS"):
            cid = cats.cutoff_category_id(c.name, end)
            assert cid == 10000 + k * 129 + position
            cut = cats.get_category(cid)
            assert cut.name == f"{c.name}_cutoff_{end}" and cut.base_id == c.id
            assert cut.supercategory == f"{c.supercategory}_cutoff_{end}" and cut.reduced_index is None
    assert cats.get_category("spleen_cutoff_I").id == 10000
    assert cats.get_category("vertebrae_C6_cutoff_S").id == 10000 + 129 + 44
    coco = cats.coco_categories()
    assert len({c["id"] for c in coco}) == len(coco) == 385
    assert set(coco[0]) == {"id", "name", "supercategory"}


def test_unknown_categories_raise():
    with pytest.raises(ValueError, match="unknown FluoroSeg category 999"):
        cats.get_category(999)
    with pytest.raises(ValueError, match="kidney_middle"):
        text.describe("kidney_middle")
    with pytest.raises(ValueError, match="'I'"):
        cats.cutoff_category_id(1, "X")
    with pytest.raises(ValueError, match="reduced class index"):
        cats.reduced_members(57)
    assert cats.reduced_index(999) is None and cats.reduced_index(10005) is None


@pytest.mark.parametrize("category", cats.CATEGORIES, ids=lambda c: f"{c.id}")
def test_every_category_has_plain_word_variants(category):
    phrases = text.describe(category.id)
    assert phrases == text.describe(category.name)
    assert len(phrases) >= 2 and len(set(phrases)) == len(phrases)
    for phrase in phrases:
        assert phrase == phrase.strip() and phrase and "_" not in phrase and "  " not in phrase
    base_name = cats.get_category(category.base_id).name
    side = re.search(r"_(left|right)(_|$)", base_name)
    if side:
        other = {"left": "right", "right": "left"}[side[1]]
        assert all(side[1] in p and other not in p for p in phrases)
    if category.cutoff is not None:
        base = text.describe(category.base_id)
        assert phrases[: len(base)] == base
        assert {"I": "inferior", "S": "superior"}[category.cutoff] in phrases[-1]


def test_examples_from_the_issue():
    c6 = text.describe("vertebrae_C6")
    assert c6[0] == "C6 vertebra" and {"sixth cervical vertebra", "C6", "6th cervical vertebra"} <= set(c6)
    assert text.describe("kidney_left")[0] == "left kidney"
    assert text.describe("rib_right_12")[0] == "right twelfth rib"
    assert text.describe("lung_upper_lobe_left")[0] == "left upper lobe"
    assert "atlas" in text.describe("vertebrae_C1") and "axis" in text.describe("vertebrae_C2")


@pytest.mark.parametrize(
    "region,word,count", [("C", "cervical", 7), ("T", "thoracic", 12), ("L", "lumbar", 5), ("S", "sacral", 1)]
)
def test_vertebra_ordinals(region, word, count):
    for n in range(1, count + 1):
        phrases = text.describe(f"vertebrae_{region}{n}")
        assert phrases[0] == f"{region}{n} vertebra"
        assert f"{_ORDINAL_WORDS[n - 1]} {word} vertebra" in phrases and f"{region}{n}" in phrases


def test_reduced_descriptions():
    for index, name in enumerate(cats.REDUCED_NAMES):
        phrases = text.describe_reduced(index)
        assert len(phrases) >= 2 and all("_" not in p for p in phrases), name
        if len(cats.reduced_members(index)) == 1:
            assert phrases == text.describe(cats.reduced_members(index)[0])
    assert text.describe_reduced(cats.REDUCED_NAMES.index("ribs"))[0] == "ribs"
    assert text.describe_reduced(cats.REDUCED_NAMES.index("vertebrae_C"))[0] == "cervical vertebrae"
    assert text.describe_reduced(cats.REDUCED_NAMES.index("kidney"))[0] == "kidneys"


def test_tool_descriptions():
    phrases = text.describe_tool("k_wire", "titanium")
    assert phrases[0] == "titanium K-wire"
    assert {"titanium Kirschner wire", "K-wire", "surgical tool"} <= set(phrases)
    assert text.describe_tool("K-wire") == text.describe_tool("k_wire")
    assert text.describe_tool("screw", "stainless_steel")[0] == "stainless steel screw"
    assert text.describe_tool("bone_saw", "peek")[:2] == ("PEEK bone saw", "bone saw")
    assert "titanium" not in " ".join(text.describe_tool("screw"))
    with pytest.raises(ValueError, match="tool kind"):
        text.describe_tool("")
    with pytest.raises(ValueError, match="tool material"):
        text.describe_tool("screw", 3)
