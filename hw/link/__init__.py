"""The board link: UART, framed command protocol with CRC, and its executor."""
