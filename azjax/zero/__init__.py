"""azjax.zero"""
