"""Dash pages, one module each (``dash.register_page``); ids are prefixed with the page's name."""
