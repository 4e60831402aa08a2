"""``{% rolegate_ci_snippets mapping %}``: the CI snippets block of a mapping's admin page."""

from django import template

from console.snippets import mapping_snippets

register = template.Library()


@register.inclusion_tag("console/ci_snippets.html")
def rolegate_ci_snippets(mapping):
    return {"snippets": mapping_snippets(mapping), "mapping": mapping}
