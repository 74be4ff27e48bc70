"""selfloop.corpus"""
