"""How settle shows itself to people: the customer's pages, their PDF and the mails.

One Jinja2 environment with autoescape (`templating`), amounts and dates by
Babel in the customer's locale (`formats`), the invoice as a PDF (`pdf`), and
the templates and static files they use. It knows no HTTP and no SMTP: the
handlers serve what it renders, `notify` sends it.
"""
