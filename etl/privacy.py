"""Masking residents' and staff's personal data for roles that do not need it.

Names keep their first character (张*, 欧阳** keeps 欧), phone numbers their first three and last
four digits (138****1234), ID numbers (居民身份证, 18 characters) their first six and last four.
Free text (descriptions, notes) has phone and ID numbers masked wherever they appear.
"""

from __future__ import annotations

import re
from typing import Any

MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})-?(\d{3,4})(\d{4})(?!\d)")
ID_NUMBER = re.compile(r"(?<![0-9Xx])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9Xx])")


def mask_name(name: str | None) -> str | None:
    """``张三`` → ``张*``; ``Zhang San`` → ``Z*******``.

    >>> mask_name("张三"), mask_name("欧阳小明")
    ('张*', '欧***')
    """
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str | None) -> str | None:
    """``13812341234`` → ``138****1234``; other numbers keep their last four digits.

    >>> mask_phone("13812341234"), mask_phone("0717-4214580")
    ('138****1234', '*******4580')
    """
    if not phone:
        return phone
    digits = re.sub(r"\D", "", phone)
    if MOBILE.fullmatch(digits):
        return digits[:3] + "****" + digits[-4:]
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def mask_text(text: str | None) -> str | None:
    """Phone and ID numbers inside free text masked.

    >>> mask_text("联系人电话13812341234，身份证110101199003071234")
    '联系人电话138****1234，身份证110101********1234'
    """
    if not text:
        return text
    text = ID_NUMBER.sub(lambda m: m[1] + "*" * 8 + m[3][-4:], text)
    text = MOBILE.sub(lambda m: m[1] + "****" + m[3], text)
    return LANDLINE.sub(lambda m: m[1] + "-" + "*" * len(m[2]) + m[3], text)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV
    injection); numbers and other text pass unchanged.

    >>> neutralise_formula("=1+2"), neutralise_formula(-3), neutralise_formula("网格")
    ("'=1+2", -3, '网格')
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def neutralise_frame(frame: Any) -> Any:
    """A copy of a DataFrame with every text cell passed through :func:`neutralise_formula`."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype).startswith("str"):
            out[column] = out[column].map(neutralise_formula)
    return out
