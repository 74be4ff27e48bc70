"""selfloop.rework"""
