import logging

access_log: logging.Logger
app_log: logging.Logger
gen_log: logging.Logger
