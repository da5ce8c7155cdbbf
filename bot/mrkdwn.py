"""A model's Markdown as text Slack accepts: mrkdwn for posted messages, escaped Markdown for streams, and
long answers cut into messages at safe points.

Slack reads `&`, `<` and `>` as its own markup (`<@U123>` pings someone, `<!channel>` everyone), so every
answer is escaped; code is kept as code. A message over Slack's length is refused (`msg_too_long`, in
practice from about 4,000 characters), so an answer is cut where a reader would pause (a paragraph, a line,
a word), never inside a link or inline code, and a code block cut in two is closed and reopened.
"""

from __future__ import annotations

import re

FENCE = "```"
CLOSE_FENCE = "\n" + FENCE
REOPEN_FENCE = FENCE + "\n"

_FENCE_LINE = re.compile(r"^[ \t]*```", re.MULTILINE)
_INLINE = re.compile(r"`[^`\n]+`|\[[^\]\n]+\]\([^)\s]+\)|https?://\S+")
"""Spans a cut must not fall into: inline code, Markdown links, bare URLs."""
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]+`")


def escape(text: str) -> str:
    """Slack's three control characters, so no answer can ping anyone or break the markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """What a person typed, from Slack's escaped message text (`&amp;` last, so `&amp;lt;` stays `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def slack_length(text: str) -> int:
    """Characters `text` takes once escaped: what Slack's length limit counts."""
    return len(text) + 4 * text.count("&") + 3 * (text.count("<") + text.count(">"))


def to_mrkdwn(markdown: str) -> str:
    """Markdown (bold, italics, strike, links, lists, headings, code) as Slack's mrkdwn, escaped.

    Code blocks and inline code are kept verbatim (escaped only; a fence's language tag is dropped, as Slack
    would show it as the first line of code). The result is about `slack_length(markdown)` long, never much more.
    """
    parts = []
    for is_code, chunk in _code_blocks(markdown):
        if is_code:
            parts.append(FENCE + escape(_drop_language(chunk)))
        else:
            parts.append(_prose_to_mrkdwn(chunk))
    return "".join(parts)


def to_stream_markdown(markdown: str) -> str:
    """Markdown for Slack's streaming methods (`markdown_text`, which Slack renders itself), escaped."""
    return escape(markdown)


def _code_blocks(text: str) -> list[tuple[bool, str]]:
    """(is_code, chunk) pieces; a code chunk is what follows an opening fence, up to and with its closing one."""
    pieces, position, inside = [], 0, False
    for match in _FENCE_LINE.finditer(text):
        if inside:
            pieces.append((True, text[position:match.end()]))
        else:
            pieces.append((False, text[position:match.start()]))
        position = match.end()
        inside = not inside
    pieces.append((inside, text[position:]))
    return [(is_code, chunk) for is_code, chunk in pieces if chunk or is_code]


def _drop_language(code: str) -> str:
    """```python\\n... -> ```\\n...: the language tag is what follows the fence on its line."""
    first, newline, rest = code.partition("\n")
    if newline and re.fullmatch(r"[\w+#.-]*", first.strip()):
        return "\n" + rest
    return code


def _prose_to_mrkdwn(text: str) -> str:
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{len(kept) - 1}\x00"

    text = _INLINE_CODE.sub(lambda m: keep(escape(m.group(0))), text)
    text = _LINK.sub(lambda m: keep(_link(m.group(1), m.group(2))), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: keep("*" + _strip_emphasis(m.group(1)) + "*"), text)
    text = _BOLD.sub(lambda m: keep("*" + (m.group(1) or m.group(2)) + "*"), text)
    text = _ITALIC.sub(lambda m: "_" + m.group(1) + "_", text)
    text = _STRIKE.sub(lambda m: "~" + m.group(1) + "~", text)
    text = _BULLET.sub(lambda m: m.group(1) + "• ", text)
    for _ in range(2):  # a kept span can hold another (a link inside bold)
        text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)
    return text


def _link(text: str, url: str) -> str:
    """`<url|text>` for web and mail links; anything else stays as it was written, escaped."""
    if not re.match(r"(https?://|mailto:)", url):
        return escape(f"[{text}]({url})")
    return f"<{escape(url).replace('|', '%7C')}|{escape(text)}>"


def _strip_emphasis(text: str) -> str:
    return re.sub(r"\*\*|__", "", text)


# -- cutting a long answer into messages ------------------------------------------------------------------


def inside_code_block(text: str) -> bool:
    """Whether `text` ends inside a fenced code block (an odd number of fence lines)."""
    return len(_FENCE_LINE.findall(text)) % 2 == 1


def cut_point(text: str, budget: int, *, keep: int = 0) -> int:
    """Where to end a message holding the start of `text`, so that it fits in `budget` (counted as
    `slack_length`, with room to close a code block): the last paragraph end, else line end, else space,
    at or after `keep` (what is already shown and cannot be taken back) and outside links and inline code.
    Returns len(text) when all of it fits."""
    if slack_length(text) + len(CLOSE_FENCE) <= budget:
        return len(text)
    limit = _fitting_prefix(text, budget - len(CLOSE_FENCE))
    if limit <= keep:
        return max(keep, 1) if keep else max(limit, 1)
    window = text[:limit + 1]
    blocked = [(m.start(), m.end()) for m in _INLINE.finditer(text) if m.start() < limit]
    floor = max(keep, limit // 2)

    def free(position: int) -> bool:
        return not any(start < position < end for start, end in blocked)

    for separator in ("\n\n", "\n", " "):
        position = window.rfind(separator, 0, limit + 1)
        while position >= floor:
            end = position + len(separator)
            if end <= limit and free(position):
                return end
            position = window.rfind(separator, 0, position)
    # no good break: the longest piece outside a protected span, else a hard cut
    position = limit
    while position > max(keep, 1) and not free(position):
        position -= 1
    return position if position > keep else limit


def _fitting_prefix(text: str, budget: int) -> int:
    """The longest prefix of `text` whose slack_length is at most `budget`."""
    used = 0
    for index, char in enumerate(text):
        used += 5 if char == "&" else 4 if char in "<>" else 1
        if used > budget:
            return index
    return len(text)


def split(markdown: str, budget: int) -> list[str]:
    """A whole answer cut into messages of at most `budget` escaped characters each, nothing dropped: a code
    block cut in two is closed at the end of one message and reopened at the start of the next."""
    pieces = []
    rest = markdown
    reopened = 0
    while rest:
        end = max(cut_point(rest, budget, keep=reopened), reopened + 1)
        piece, rest = rest[:end], rest[end:]
        reopened = 0
        if rest and inside_code_block(piece):
            piece += CLOSE_FENCE
            rest = REOPEN_FENCE + rest
            reopened = len(REOPEN_FENCE)
        pieces.append(piece)
    return pieces or [""]
