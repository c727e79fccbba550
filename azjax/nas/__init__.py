"""azjax.nas"""
