"""selfloop.sandbox"""
