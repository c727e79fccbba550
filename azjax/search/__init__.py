"""azjax.search"""
