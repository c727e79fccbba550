"""azjax.data"""
