"""``{{ value|visible }}``: claim text with control and bidi characters shown as escapes.

Claims are attacker-chosen (any presented token's): U+202E made ``evil/...`` read as ``live/...``
and ESC sequences reach the terminal of whoever copies the text. The result is still
autoescaped as HTML.
"""

from django import template

from exchange.safe_text import visible as visible_text

register = template.Library()


@register.filter
def visible(value):
    return visible_text(value)
