from django import template

register = template.Library()


@register.filter
def clock(seconds: int) -> str:
    """1:05 or 1:02:03, as the board script's timers show it."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
