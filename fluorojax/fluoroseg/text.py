"""Plain-word descriptions of FluoroSeg categories, reduced classes and tools.

Every description tuple starts with the canonical phrase and holds several variants, e.g.
``describe("vertebrae_C6")`` -> ("C6 vertebra", "sixth cervical vertebra", "C6",
"6th cervical vertebra", "cervical vertebra C6", "vertebra C6"); ``describe("kidney_left")`` ->
("left kidney", "kidney on the left", "the left kidney"). Cut-off categories get their base
structure's descriptions plus one naming the cut. Descriptions are deterministic, lower case
except for abbreviations (C6, SVC, K-wire), and never contain underscores.
"""

from __future__ import annotations

import re

from fluorojax.fluoroseg.categories import REDUCED_NAMES, get_category, reduced_members

_ORDINALS = (
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
)
_SPINE_REGIONS = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}
_SPECIAL_VERTEBRAE = {"C1": "atlas", "C2": "axis"}

# Base noun phrases (canonical first) of each structure name with its side suffix removed.
_NOUNS = {
    "spleen": ("spleen",),
    "kidney": ("kidney",),
    "gallbladder": ("gallbladder", "gall bladder"),
    "liver": ("liver",),
    "stomach": ("stomach",),
    "pancreas": ("pancreas",),
    "adrenal_gland": ("adrenal gland", "suprarenal gland", "adrenal"),
    "esophagus": ("esophagus", "oesophagus", "gullet"),
    "trachea": ("trachea", "windpipe"),
    "thyroid_gland": ("thyroid gland", "thyroid"),
    "small_bowel": ("small bowel", "small intestine"),
    "duodenum": ("duodenum",),
    "colon": ("colon", "large intestine", "large bowel"),
    "urinary_bladder": ("urinary bladder", "bladder"),
    "prostate": ("prostate", "prostate gland"),
    "kidney_cyst": ("kidney cyst", "renal cyst"),
    "sacrum": ("sacrum", "sacral bone"),
    "heart": ("heart", "cardiac silhouette"),
    "aorta": ("aorta",),
    "pulmonary_vein": ("pulmonary vein", "pulmonary veins"),
    "brachiocephalic_trunk": ("brachiocephalic trunk", "innominate artery"),
    "subclavian_artery": ("subclavian artery",),
    "common_carotid_artery": ("common carotid artery", "carotid artery"),
    "brachiocephalic_vein": ("brachiocephalic vein", "innominate vein"),
    "atrial_appendage": ("atrial appendage", "auricle"),
    "superior_vena_cava": ("superior vena cava", "SVC"),
    "inferior_vena_cava": ("inferior vena cava", "IVC"),
    "portal_vein_and_splenic_vein": (
        "portal and splenic veins",
        "portal vein and splenic vein",
        "portal venous system",
    ),
    "iliac_artery": ("iliac artery", "common iliac artery"),
    "iliac_vena": ("iliac vein", "common iliac vein"),
    "humerus": ("humerus", "upper arm bone"),
    "scapula": ("scapula", "shoulder blade"),
    "clavicula": ("clavicle", "collarbone"),
    "femur": ("femur", "thigh bone"),
    "hip": ("hip bone", "hemipelvis", "innominate bone"),
    "spinal_cord": ("spinal cord",),
    "gluteus_maximus": ("gluteus maximus", "gluteus maximus muscle"),
    "gluteus_medius": ("gluteus medius", "gluteus medius muscle"),
    "gluteus_minimus": ("gluteus minimus", "gluteus minimus muscle"),
    "autochthon": ("autochthonous back muscles", "erector spinae", "paraspinal muscles"),
    "iliopsoas": ("iliopsoas", "iliopsoas muscle", "psoas"),
    "brain": ("brain",),
    "skull": ("skull", "cranium"),
    "sternum": ("sternum", "breastbone"),
    "costal_cartilages": ("costal cartilages", "rib cartilage"),
    "patella": ("patella", "kneecap"),
    "tibia": ("tibia", "shin bone"),
    "fibula": ("fibula", "calf bone"),
    "tarsal": ("tarsal bones", "tarsals", "tarsus"),
    "metatarsal": ("metatarsal bones", "metatarsals"),
    "phalanges_feet": ("toe phalanges", "phalanges of the foot", "toe bones"),
    "ulna": ("ulna",),
    "radius": ("radius",),
    "carpal": ("carpal bones", "carpals", "wrist bones"),
    "metacarpal": ("metacarpal bones", "metacarpals"),
    "phalanges_hand": ("finger phalanges", "phalanges of the hand", "finger bones"),
    "tool": ("surgical tool", "tool", "instrument", "device"),
}

# Reduced classes that merge several structures: plural phrases (canonical first).
_REDUCED_NOUNS = {
    "kidney": ("kidneys", "kidney", "both kidneys"),
    "adrenal_gland": ("adrenal glands", "adrenal gland", "suprarenal glands"),
    "lung": ("lungs", "lung", "pulmonary lobes"),
    "vertebrae_L": ("lumbar vertebrae", "lumbar spine", "lumbar vertebra", "L-spine"),
    "vertebrae_T": ("thoracic vertebrae", "thoracic spine", "thoracic vertebra", "T-spine"),
    "vertebrae_C": ("cervical vertebrae", "cervical spine", "cervical vertebra", "C-spine"),
    "subclavian_artery": ("subclavian arteries", "subclavian artery"),
    "common_carotid_artery": ("common carotid arteries", "carotid arteries", "common carotid artery"),
    "brachiocephalic_vein": ("brachiocephalic veins", "innominate veins", "brachiocephalic vein"),
    "humerus": ("humerus", "humeri", "upper arm bone"),
    "scapula": ("scapula", "scapulae", "shoulder blades"),
    "clavicula": ("clavicle", "clavicles", "collarbones"),
    "femur": ("femur", "femurs", "thigh bones"),
    "pelvis": ("pelvis", "pelvic bones", "hip bones"),
    "gluteus": ("gluteal muscles", "gluteus muscles", "buttock muscles"),
    "autochthon": ("autochthonous back muscles", "erector spinae", "paraspinal muscles"),
    "iliopsoas": ("iliopsoas muscles", "iliopsoas", "psoas muscles"),
    "ribs": ("ribs", "rib cage", "rib"),
}

_TOOL_KINDS = {
    "k_wire": ("K-wire", "Kirschner wire", "wire"),
    "screw": ("screw", "bone screw"),
    "pedicle_screw": ("pedicle screw", "screw"),
    "cannulated_screw": ("cannulated screw", "screw"),
    "plate": ("plate", "bone plate"),
    "nail": ("intramedullary nail", "nail"),
    "needle": ("needle", "biopsy needle"),
    "guidewire": ("guidewire", "guide wire"),
    "catheter": ("catheter",),
    "drill": ("drill bit", "drill"),
}
_MATERIALS = {
    "steel": "steel",
    "stainless_steel": "stainless steel",
    "titanium": "titanium",
    "cobalt_chrome": "cobalt-chrome",
    "nitinol": "nitinol",
    "tungsten": "tungsten",
    "peek": "PEEK",
    "polyethylene": "polyethylene",
}


def _unique(phrases) -> tuple[str, ...]:
    return tuple(dict.fromkeys(phrases))


def _words(name: str) -> str:
    return name.replace("_", " ").strip()


def _numeric(number: int) -> str:
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number, 'th') }"


def _vertebra(level: str) -> tuple[str, ...]:
    region, number = _SPINE_REGIONS[level[0]], int(level[1:])
    ordinal, numeric = _ORDINALS[number - 1], _numeric(number)
    phrases = [
        f"{level} vertebra",
        f"{ordinal} {region} vertebra",
        level,
        f"{numeric} {region} vertebra",
        f"{region} vertebra {level}",
        f"vertebra {level}",
    ]
    if level in _SPECIAL_VERTEBRAE:
        phrases.append(_SPECIAL_VERTEBRAE[level])
    return tuple(phrases)


def _rib(side: str, number: int) -> tuple[str, ...]:
    ordinal, numeric = _ORDINALS[number - 1], _numeric(number)
    return (
        f"{side} {ordinal} rib",
        f"{ordinal} {side} rib",
        f"{side} {numeric} rib",
        f"{side} rib {number}",
        f"rib {number} on the {side}",
    )


def _lung_lobe(lobe: str, side: str) -> tuple[str, ...]:
    return (
        f"{side} {lobe} lobe",
        f"{lobe} lobe of the {side} lung",
        f"{side} {lobe} lung lobe",
        f"{side} lung {lobe} lobe",
    )


def _structure(name: str) -> tuple[str, ...]:
    if match := re.fullmatch(r"vertebrae_([CTLS]\d{1,2})", name):
        return _vertebra(match[1])
    if match := re.fullmatch(r"rib_(left|right)_(\d{1,2})", name):
        return _rib(match[1], int(match[2]))
    if match := re.fullmatch(r"lung_(upper|middle|lower)_lobe_(left|right)", name):
        return _lung_lobe(match[1], match[2])
    match = re.fullmatch(r"(.+?)_(left|right)", name)
    base, side = (match[1], match[2]) if match else (name, None)
    nouns = _NOUNS.get(base, (_words(base),))
    if side is None:
        return _unique(list(nouns) + [f"the {nouns[0]}"])
    return _unique([f"{side} {n}" for n in nouns] + [f"{nouns[0]} on the {side}", f"the {side} {nouns[0]}"])


def describe(category: int | str) -> tuple[str, ...]:
    """Descriptions of a FluoroSeg category given by id or name (canonical phrase first)."""
    cat = get_category(category)
    if cat.cutoff is None:
        return _structure(cat.name)
    base = _structure(get_category(cat.base_id).name)
    end = "inferior" if cat.cutoff == "I" else "superior"
    return base + (f"{base[0]} cut off at the {end} end of the scan",)


def describe_reduced(index: int) -> tuple[str, ...]:
    """Descriptions of reduced class ``index`` (0..56; the names are ``REDUCED_NAMES``)."""
    members = reduced_members(index)
    name = REDUCED_NAMES[index]
    if name in _REDUCED_NOUNS:
        return _REDUCED_NOUNS[name]
    if len(members) != 1:
        raise ValueError(f"reduced class {name!r} merges {len(members)} categories but has no plural phrases")
    return describe(members[0])


def describe_tool(kind: str, material: str | None = None) -> tuple[str, ...]:
    """Descriptions of a tool of ``kind`` (e.g. "k_wire", "screw", "plate") and ``material``.

    Known kinds and materials get their usual words ("k_wire" -> "K-wire", "Kirschner wire");
    other names are used as plain words. Material phrases come first, then the kind alone, then
    the generic tool phrases.
    """
    if not isinstance(kind, str) or not kind.strip("_ "):
        raise ValueError(f"tool kind must be a non-empty string such as {sorted(_TOOL_KINDS)}, got {kind!r}")
    if material is not None and (not isinstance(material, str) or not material.strip("_ ")):
        raise ValueError(
            f"tool material must be None or a non-empty string such as {sorted(_MATERIALS)}, got {material!r}"
        )
    key = kind.lower().replace("-", "_")
    kinds = _TOOL_KINDS.get(key, (_words(kind),))
    phrases = []
    if material is not None:
        words = _MATERIALS.get(material.lower(), _words(material))
        phrases += [f"{words} {k}" for k in kinds]
    return _unique(phrases + list(kinds) + list(_NOUNS["tool"]))
