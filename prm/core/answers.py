"""Final-answer checking: extract a response's answer and decide whether it matches the reference.

Pure Python (no Django), safe to call from any thread: math-verify's own timeouts rely on
SIGALRM, which only works in the main thread (and would cancel pytest-timeout's alarm there),
so they are switched off and pathological inputs are refused before they reach sympy instead.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from math_verify import parse, verify

# Longer answers are not short mathematical answers; sympy on them is slow and rarely right.
MAX_VERIFY_CHARS = 160
REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Exponent towers and huge literal exponents make sympy compute numbers with millions of digits.
_EXPONENT_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\(?[\w.]+\)?\s*\^|\*\*[^*]*\*\*")
_HUGE_EXPONENT = re.compile(r"(\^|\*\*)\s*\{?\s*\(?\s*-?\d{4,}")
_HUGE_FACTORIAL = re.compile(r"\d{5,}\s*!")

_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|correct\s+answer|answer|correct\s+option|correct\s+choice)"
    r"\s*(?:is|should\s+be|would\s+be|will\s+be|:)\s*:?\s*(?P<answer>[^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?![\w.]*\d)|(?<![\w.])-?\.\d+")
# A number next to one of these is part of an expression or a size ("4 \times 4", "3->2"), not a result.
_OPERAND_BEFORE = re.compile(r"(?:\\times|\\cdot|[×*/+^>-]|(?<![A-Za-z])x|\\div)\s*\$?\s*$")
_OPERAND_AFTER = re.compile(r"\s*\$?\s*(?:\\times|\\cdot|[×*/+^-]|x\s*\d|\\div)")
MAX_BARE_ANSWER_CHARS = 40


# --------------------------------------------------------------------------- extraction


def _boxed_contents(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...} (balanced braces) or `\\boxed 5` form, in order."""
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        start = text.find(command)
        while start != -1:
            cursor = start + len(command)
            if cursor < len(text) and text[cursor] == "{":
                depth, end = 0, cursor
                while end < len(text):
                    if text[end] == "{":
                        depth += 1
                    elif text[end] == "}":
                        depth -= 1
                        if depth == 0:
                            break
                    end += 1
                # An unclosed box runs to the end of the text: still the model's answer.
                found.append((start, text[cursor + 1 : end]))
            elif cursor < len(text) and text[cursor] == " ":
                match = re.match(r" +([^\s$]+)", text[cursor:])
                if match:
                    found.append((start, match.group(1)))
            start = text.find(command, cursor)
    return [content for _, content in sorted(found)]


def _clean_answer(answer: str) -> str:
    answer = answer.strip()
    # "The answer is: $\frac{1}{2}$." -> "$\frac{1}{2}$"
    answer = re.sub(r"^[\s:*]+|[\s*]+$", "", answer)
    answer = re.sub(r"[.;,]+$", "", answer).strip()
    return answer


def extract_final_answer(text: str) -> str | None:
    """The response's final answer: last box, else an answer line, else the last number."""
    if not text:
        return None
    boxes = [box.strip() for box in _boxed_contents(text) if box.strip()]
    if boxes:
        # "\boxed{\text{The answer is (E)}}" boxes a sentence: read the answer inside it.
        return _answer_from_line(_strip_latex_wrappers(boxes[-1])) or boxes[-1]
    answer = _answer_from_line(text)
    if answer:
        return answer
    return _answer_from_tail(text)


def _answer_from_line(text: str) -> str | None:
    """The answer stated on the last "Answer: ..." / "the answer is ..." line, if any."""
    lines = list(_ANSWER_LINE.finditer(text))
    if lines:
        answer = _clean_answer(lines[-1].group("answer"))
        # "The answer is 12 because ..." -> "12"; "... is C. The ..." -> "C"
        answer = re.split(r"\.\s|\s+(?:because|since|as)\s", answer)[0]
        answer = _clean_answer(answer)
        if answer:
            return answer
    return None


def _answer_from_tail(text: str) -> str | None:
    stripped = text.strip()
    # A one-line response ("B.", "E", "12 cm") is itself the answer.
    if "\n" not in stripped and len(stripped) <= MAX_BARE_ANSWER_CHARS:
        return _clean_answer(stripped) or None
    return _last_standalone_number(text)


def _last_standalone_number(text: str) -> str | None:
    """The last number of the final paragraph that stands alone, not an operand ("4 x 4", "3->2")."""
    paragraphs = [paragraph for paragraph in re.split(r"\n\s*\n", text) if paragraph.strip()]
    if not paragraphs:
        return None
    last = paragraphs[-1]
    for match in reversed(list(_NUMBER.finditer(last))):
        before, after = last[: match.start()], last[match.end() :]
        if _OPERAND_BEFORE.search(before) or _OPERAND_AFTER.match(after):
            continue
        return match.group(0)
    return None


# --------------------------------------------------------------------------- normalisation


def _strip_latex_wrappers(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^\$+|\$+$", "", text).strip()
    text = re.sub(r"^\\\(|\\\)$", "", text).strip()
    text = re.sub(r"^\\\[|\\\]$", "", text).strip()
    # \text{..}, \mathrm{..}, \textbf{..}: keep the words, drop the command.
    for _ in range(3):
        text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox|textit|operatorname)\s*\{([^{}]*)\}", r"\1", text)
    return text.strip()


def normalise_text(text: str) -> str:
    """Case-, space- and wrapper-insensitive form used for the last, plain-string comparison."""
    text = _strip_latex_wrappers(text)
    text = text.replace("\\!", "").replace("\\,", " ").replace("\\;", " ").replace("~", " ")
    text = re.sub(r"\s+", " ", text).strip().lower()
    return re.sub(r"[.\s]+$", "", text)


_UNIT_WORDS = (
    r"degrees?|deg|cm\^?2?|mm|km|m\^?[23]?|kg|g|units?|square\s+units|sq\s*units|"
    r"cm²|m²|cm³|m³|minutes?|min|hours?|h|seconds?|s|years?|days?|times|people|ways|points|"
    r"dollars?|euros?|pounds?|yuan|usd|eur|gbp|rmb"
)
# A currency sign before the amount: "\$5", "$5.00" (a lone "$" is not LaTeX's delimiter here), "€3".
_CURRENCY_PREFIX = re.compile(r"^(-?)\s*(?:\\\$|US\$|\$|€|£|¥)\s*")


def _as_number(text: str) -> float | None:
    """A plain number with its unit stripped (30°, 30^\\circ, 50%, 1,234 cm), or None."""
    text = _strip_latex_wrappers(text)
    text = _CURRENCY_PREFIX.sub(r"\1", text)
    text = text.replace("\\%", "%").replace("\\,", "").replace("{,}", "").replace("\\ ", " ")
    text = re.sub(r"\^\s*\{?\\circ\}?|°|\\degree", "", text)
    text = re.sub(r"\\mathrm\{\s*~?\s*([a-zA-Z]+)\s*\}", r" \1", text)
    text = text.replace("~", " ").strip()
    text = re.sub(rf"(?<=\d)\s*(?:{_UNIT_WORDS})\s*$", "", text, flags=re.IGNORECASE)
    text = text.rstrip("%").strip().rstrip(".").strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    if not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text):
        return None
    return float(text)


def _numbers_close(left: float, right: float) -> bool:
    return math.isclose(left, right, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


# --------------------------------------------------------------------------- math-verify


def _safe_for_sympy(text: str) -> bool:
    return (
        len(text) <= MAX_VERIFY_CHARS
        and not _EXPONENT_TOWER.search(text)
        and not _HUGE_EXPONENT.search(text)
        and not _HUGE_FACTORIAL.search(text)
    )


@functools.lru_cache(maxsize=8192)
def _math_verify_equal(predicted: str, reference: str) -> bool:
    # Cached: Monte Carlo rollouts and option matching compare the same short strings again and again.
    if not (_safe_for_sympy(predicted) and _safe_for_sympy(reference)):
        return False
    try:
        # Timeouts off: signals fail outside the main thread; _safe_for_sympy guards instead.
        gold, target = _parsed(reference), _parsed(predicted)
        if not gold or not target:
            return False
        return bool(verify(list(gold), list(target), timeout_seconds=None))
    except Exception:  # math-verify/sympy raise many types on odd input; unequal is the answer
        return False


@functools.lru_cache(maxsize=8192)
def _parsed(text: str) -> tuple:
    # A tuple, so the cached value cannot be changed by a caller in another thread.
    return tuple(parse(_as_math(text), parsing_timeout=None))


def clear_caches() -> None:
    """Forget cached math-verify results (tests and timings that must reach sympy again)."""
    _math_verify_equal.cache_clear()
    _parsed.cache_clear()


def _as_math(text: str) -> str:
    text = text.strip()
    if "$" in text or "\\(" in text or "\\[" in text or "\\boxed" in text:
        return text
    return f"${text}$"


# --------------------------------------------------------------------------- multiple choice

_LETTER_FORMS = (
    r"\(?(?P<l1>[A-Z])\)?[.:]?",  # C, (C), C., C:
    r"(?:option|choice|answer)\s*:?\s*\(?(?P<l2>[A-Z])\)?[.:]?",  # option C, choice (C)
)
_LETTER_PREFIX = re.compile(r"^(?:\((?P<p1>[A-Z])\)|(?P<p2>[A-Z])[.:)])\s*(?P<rest>.+)$", re.DOTALL)


def _is_label_only(option: str, letter: str) -> bool:
    """An option that is only its own label ("A" or "(A)" as option A): its content is in the image.
    A single letter that is not its own label ("Q" as option B, "Which point ...?") is a value."""
    match = re.fullmatch(r"\(?([A-Z])\)?", option.strip())
    return match is not None and match.group(1) == letter


def _option_letters(options: Sequence[str]) -> str:
    return "".join(chr(ord("A") + index) for index in range(len(options)))


def option_letter(answer: str, options: Sequence[str]) -> str | None:
    """The option letter an extracted answer names, or None when it names none."""
    if not answer or not options:
        return None
    letters = _option_letters(options)
    text = _strip_latex_wrappers(answer).strip()
    text = re.sub(r"[\s.]+$", "", text)
    for form in _LETTER_FORMS:
        match = re.fullmatch(form, text, flags=re.IGNORECASE)
        if match:
            letter = next(group for group in match.groups() if group).upper()
            if letter in letters:
                return letter
    # "(C) 12 cm", "C. 12 cm", "C: 12 cm": an explicit letter marker followed by text.
    match = _LETTER_PREFIX.match(text)
    if match:
        letter = (match.group("p1") or match.group("p2")).upper()
        if letter in letters and not _contradicts_option(match.group("rest"), letter, options):
            return letter
    # The option's own text ("12 cm"), when options carry texts rather than bare letters.
    # "A square" read as English: the article goes, "square" is matched against the option texts.
    without_article = re.sub(r"^(?:a|an|the)\s+(?=[a-z])", "", text, flags=re.IGNORECASE)
    matches = [
        letter
        for letter, option in zip(letters, options, strict=True)
        if not _is_label_only(option, letter)
        and (
            _texts_equivalent(text, option)
            or (without_article != text and _texts_equivalent(without_article, option))
        )
    ]
    if len(set(matches)) == 1:
        return matches[0]
    # "C 12 cm": a bare letter followed by that option's text ("A cat has..." is not option A).
    match = re.match(r"^([A-Z])\s+(.+)$", text)
    if match and match.group(1) in letters:
        option = options[letters.index(match.group(1))]
        if not _is_label_only(option, match.group(1)) and _texts_equivalent(match.group(2), option):
            return match.group(1)
    return None


def _contradicts_option(stated: str, letter: str, options: Sequence[str]) -> bool:
    """Whether the value stated beside a letter ("(B) 1800°") is not what option B says."""
    letters = _option_letters(options)
    option = options[letters.index(letter)]
    if _is_label_only(option, letter) or _texts_equivalent(stated, option):
        return False
    stated_number, option_number = _as_number(stated), _as_number(option)
    if stated_number is not None and option_number is not None:
        return True
    return any(
        _texts_equivalent(stated, other)
        for other_letter, other in zip(letters, options, strict=True)
        if other_letter != letter and not _is_label_only(other, other_letter)
    )


# --------------------------------------------------------------------------- equivalence


_WORDS = re.compile(r"[a-z]+(?:[\s'-]+[a-z]+)*")


def _is_words(text: str) -> bool:
    """Letters only, more than one of them ("cat", "right angle"): words, not a product of symbols."""
    normalised = normalise_text(text)
    return len(normalised) > 1 and _WORDS.fullmatch(normalised) is not None


def _texts_equivalent(predicted: str, reference: str) -> bool:
    """Each kind of answer by the rule that fits it: words as text, numbers as numbers, the rest
    (expressions, LaTeX, intervals) by math-verify."""
    if not predicted.strip() or not reference.strip():
        return False
    if normalise_text(predicted) == normalise_text(reference):
        return True
    if _is_words(predicted) or _is_words(reference):
        # sympy would read "act" as a*c*t and call it equal to "cat".
        return False
    predicted_number, reference_number = _as_number(predicted), _as_number(reference)
    if predicted_number is not None and reference_number is not None:
        return _numbers_close(predicted_number, reference_number)
    return _math_verify_equal(predicted, reference)


def answers_equivalent(
    predicted: str | None, reference: str, *, options: Sequence[str] | None = None
) -> bool:
    """Whether an extracted answer matches the reference (an option letter when options are given)."""
    if predicted is None or not predicted.strip() or not str(reference).strip():
        return False
    reference = str(reference)
    if options:
        letters = _option_letters(options)
        reference_letter = reference.strip().upper()
        if not (len(reference_letter) == 1 and reference_letter in letters):
            # A reference given as an option's text ("8 m") stands for that option's letter.
            reference_letter = option_letter(reference, options) or ""
        if reference_letter:
            chosen = option_letter(predicted, options)
            if chosen is not None:
                return chosen == reference_letter
            reference_text = options[letters.index(reference_letter)]
            return not _is_label_only(reference_text, reference_letter) and _texts_equivalent(
                predicted, reference_text
            )
    return _texts_equivalent(predicted, reference)


def judge_response(
    response: str, reference: str, *, options: Sequence[str] | None = None
) -> tuple[str | None, bool]:
    """(extracted final answer, whether it is right) for one model response."""
    answer = extract_final_answer(response)
    return answer, answers_equivalent(answer, reference, options=options)
