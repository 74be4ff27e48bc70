"""selfloop.loop"""
