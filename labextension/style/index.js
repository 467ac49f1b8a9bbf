import './base.css';
import './variables.css';
