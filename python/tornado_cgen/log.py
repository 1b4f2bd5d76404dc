"""Loggers, under Tornado's names so existing logging configuration and
``ExpectLog`` assertions apply unchanged."""
import logging

access_log = logging.getLogger("tornado.access")
app_log = logging.getLogger("tornado.application")
gen_log = logging.getLogger("tornado.general")
