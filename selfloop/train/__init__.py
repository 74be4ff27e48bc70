"""selfloop.train"""
