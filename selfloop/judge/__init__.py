"""selfloop.judge"""
